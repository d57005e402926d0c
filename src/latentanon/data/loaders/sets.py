"""Manifests: each set's loader by name, the typed manifest of one set, all sets under a root,
and the manifest's content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from latentanon.data import layouts
from latentanon.data.config import DataConfig
from latentanon.data.layouts import UNKNOWN
from latentanon.data.loaders.common import (
    INT_COLUMNS,
    LoaderContext,
    manifest_columns,
    probe_file,
)
from latentanon.data.loaders.hmdb51 import load_hmdb51
from latentanon.data.loaders.kinetics import load_kinetics
from latentanon.data.loaders.ntu import load_ntu
from latentanon.data.loaders.thumos14 import load_thumos14
from latentanon.data.loaders.ucf101 import load_ucf101
from latentanon.data.loaders.ucf_crime import load_ucf_crime
from latentanon.data.loaders.vispr import load_vispr
from latentanon.errors import DataError

LOADERS: dict[str, Callable[[LoaderContext], list[dict]]] = {
    "pretrain": load_kinetics,
    "actions": load_ucf101,
    "privacy_videos": load_hmdb51,
    "privacy_images": load_vispr,
    "untrimmed": load_thumos14,
    "anomaly": load_ucf_crime,
    "bias": load_ntu,
}


def _assign_validation(frame: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """Hold validation identities out of the official training split (layouts.held_out_identities)."""
    fraction = layouts.val_fraction(cfg.n_identities_train, cfg.n_identities_val)
    train = frame["split"] == "train"
    if frame.loc[frame["split"] == "val"].shape[0] or not train.any():
        return frame  # the layout has its own validation split
    held = layouts.held_out_identities(frame.loc[train, "identity"], fraction)
    unknown = frame["identity"] == UNKNOWN
    to_val = train & (
        frame["identity"].isin(held)
        | (unknown & frame["video_id"].map(lambda v: layouts.hashed_to_val(str(v), fraction)))
    )
    frame.loc[to_val, "split"] = "val"
    return frame


def load_set(cfg: DataConfig, root: Path, set_name: str, progress: bool = True) -> pd.DataFrame:
    """The manifest of one set: annotation rows, probed files, validation split, typed columns."""
    if set_name not in LOADERS:
        raise DataError(f"unknown set {set_name!r}; sets: {', '.join(layouts.SETS)}")
    ctx = LoaderContext(cfg, Path(root), set_name)
    if not ctx.set_dir.is_dir():
        raise DataError(f"{ctx.set_dir}: set folder not found")
    rows = LOADERS[set_name](ctx)
    if not rows:
        raise DataError(f"{ctx.set_dir}: the annotation files list no videos")
    # threads: the decode and the checksum run in C outside the GIL (1.35x on two cores, measured)
    with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
        probed = pool.map(probe_file, [ctx.root / row["path"] for row in rows])
        for row, info in tqdm(
            zip(rows, probed),
            total=len(rows),
            desc=f"probe {set_name}",
            unit="file",
            disable=None if progress else True,
        ):
            row.update(info)
    for row in rows:
        spans = row.pop("frame_spans", None)
        if set_name == "anomaly":
            fps = row["fps"] if row["fps"] > 0 else float(cfg.fps)
            label = row["label"]
            row["segments"] = json.dumps([[round(s / fps, 4), round((e + 1) / fps, 4), label] for s, e in spans or []])
    frame = pd.DataFrame(rows)
    for column in manifest_columns(set_name):
        if column not in frame:
            frame[column] = UNKNOWN if column in INT_COLUMNS else ""
    frame = frame[list(manifest_columns(set_name))]
    for column in INT_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("int64")
    frame["fps"] = frame["fps"].astype("float64")
    duplicated = frame["video_id"].duplicated(keep=False)
    if duplicated.any():
        raise DataError(f"{ctx.set_dir}: duplicate video ids {sorted(frame.loc[duplicated, 'video_id'].unique())[:5]}")
    frame = _assign_validation(frame, cfg)
    return frame.sort_values("path").reset_index(drop=True)


def build_manifests(cfg: DataConfig, root: Path) -> dict[str, pd.DataFrame]:
    """One manifest per set found under root (folders named as in layouts.SET_DIRS)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root not found (run `latentanon generate` or point data.root at the datasets)")
    present = [s for s in layouts.SETS if (root / layouts.SET_DIRS[s]).is_dir()]
    if not present:
        raise DataError(f"{root}: none of the set folders {', '.join(layouts.SET_DIRS.values())} exists")
    return {s: load_set(cfg, root, s) for s in present}


def _canonical(value, column: str):
    if column == "segments" and isinstance(value, str):
        value = json.loads(value) if value else []
    if isinstance(value, (list, tuple, np.ndarray)):
        return json.dumps([_canonical(v, "") for v in value], separators=(",", ":"))
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return format(float(value), ".6g") if np.isfinite(float(value)) else ""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def manifest_hash(df: pd.DataFrame) -> str:
    """A stable hash of a manifest's content: independent of row order, column order and of
    whether numbers and segments were read back from CSV or are still in memory."""
    columns = sorted(df.columns)
    lines = ["\x1f".join(_canonical(row[c], c) for c in columns) for row in df[columns].to_dict(orient="records")]
    digest = hashlib.sha256()
    digest.update("\x1f".join(columns).encode())
    for line in sorted(lines):
        digest.update(b"\n" + line.encode())
    return digest.hexdigest()[:16]
