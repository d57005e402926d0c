"""Per-test-item arrays of one (method, seed) on disk: what the paired intervals resample."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        if "/" in str(key):
            raise ValueError(f"items: key {key!r} contains '/'")
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = np.asarray(value)
    return flat


def save_items(path: Path, items: Mapping) -> Path:
    """Per-test-item arrays of one (method, seed) as .npz (nested keys joined by '/')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    # numpy's stub types **kwds as ArrayLike but also offers allow_pickle: bool as a keyword, so
    # mypy reads a str-keyed ** as possibly binding it
    np.savez_compressed(tmp, **_flatten(items))  # type: ignore[arg-type]
    tmp.replace(path)
    return path


def items_complete(path: Path) -> bool:
    """Whether a saved items file holds every task's piece the seed ensemble averages (files of an
    older version lack them; their pair is measured again)."""
    from latentanon.tasks.per_item import ENSEMBLE_PIECES

    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return all(f"utility/{task}/{piece}" in files for task, piece in ENSEMBLE_PIECES.items())


def load_items(path: Path) -> dict:
    tree: dict = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            node = tree
            *parents, leaf = key.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = data[key]
    return tree
