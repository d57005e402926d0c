"""Atomic file writes shared by every stage: a hidden temp file renamed into place, so a stage
killed mid-write leaves the previous file, never a torn one."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _plain(value):
    """JSON fallback: numpy scalars as Python numbers, anything else as its string."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def write_json_atomic(path: str | Path, payload) -> Path:
    """Indented, key-sorted JSON with a trailing newline."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=_plain) + "\n")


def load_matching_checkpoint(path: Path | None, key: str, expected: str, who: str) -> dict | None:
    """A torch checkpoint whose ``key`` entry equals ``expected``, else None (start afresh).

    A torn or foreign file, or one written for other inputs or settings, is reported and ignored:
    training from scratch is always correct."""
    import torch
    from tqdm.auto import tqdm

    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        tqdm.write(f"{who}: ignoring unreadable checkpoint {path}: {exc}")
        return None
    if state.get(key) != expected:
        tqdm.write(f"{who}: checkpoint {path} belongs to other inputs or settings; starting afresh")
        return None
    return state
