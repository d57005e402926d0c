"""Atomic file writes shared by every stage: a hidden temp file renamed into place, so a stage
killed mid-write leaves the previous file, never a torn one."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "", durable: bool = True) -> Iterator[Path]:
    """A hidden, uniquely named temp path beside ``path`` for the caller to write; on success it is
    flushed to disk (fsync) and renamed into place, on failure removed. Readers never see a torn
    file and two writers never share a temp file. ``suffix`` keeps a writer that goes by the file
    extension (matplotlib, PIL, PyAV) choosing the right format. ``durable=False`` skips the fsync
    for files a stage regenerates bit for bit (the benchmark's videos: 4 ms each here, thousands of
    them); the rename still keeps readers from torn files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path: str | Path, error: type[Exception], missing: str = "", invalid: str = ""):
    """A JSON file's content, or ``error`` naming the file and the problem: missing (with the hint
    ``missing``) or not valid JSON (with the hint ``invalid``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path}: not found{f' ({missing})' if missing else ''}") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise error(f"{path}: not valid JSON ({exc}){f'; {invalid}' if invalid else ''}") from exc


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
