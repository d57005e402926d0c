"""Task labels from a feature set's records: TAD segments and per-snippet class targets, AD frame
labels, and the snippet length they are placed with."""

from __future__ import annotations

import json

import numpy as np

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet
from latentanon.tasks.heads import BACKGROUND

DEFAULT_SNIPPET_FRAMES = 16


def parse_segments(value, where: str = "segments") -> list[tuple[float, float, str]]:
    """A record's ``segments`` (a list or its JSON text) as (start_s, end_s, label) tuples."""
    if (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or (isinstance(value, str) and not value.strip())
    ):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: segments are not valid JSON: {exc}") from exc
    out = []
    for item in value:
        if len(item) < 2:
            raise DataError(f"{where}: segment {item!r} needs [start_sec, end_sec, label]")
        start, end = float(item[0]), float(item[1])
        if end < start:
            raise DataError(f"{where}: segment {item!r} ends before it starts")
        out.append((start, end, str(item[2]) if len(item) > 2 else ""))
    return out


def snippet_frames(fs: FeatureSet) -> int:
    """Frames per snippet step, from the extraction params the store recorded (shard meta
    ``params`` or index meta ``extract``), else the 16-frame default."""
    for key in ("params", "extract"):
        section = fs.meta.get(key)
        if isinstance(section, dict) and "snippet_stride" in section:
            return int(section["snippet_stride"])
    return int(fs.meta.get("snippet_stride", DEFAULT_SNIPPET_FRAMES))


def _snippet_seconds(fs: FeatureSet, row) -> float:
    fps = float(row["fps"]) if "fps" in row and row["fps"] else 0.0
    if fps <= 0:
        raise DataError(f"feature set {fs.name!r}: video {row.get('video_id', '?')} has no valid fps")
    return snippet_frames(fs) / fps


def tad_vocabulary(*sets: FeatureSet) -> list[str]:
    """Action names found in the segments of the given sets, sorted (class id = position)."""
    names: set[str] = set()
    for fs in sets:
        for i, value in enumerate(fs.records.get("segments", [])):
            names.update(label for _, _, label in parse_segments(value, f"{fs.name} row {i}"))
    return sorted(names)


def tad_targets(fs: FeatureSet, vocabulary: list[str]) -> list[np.ndarray]:
    """Per-snippet class targets (0 background, 1 + vocabulary index) from each snippet's centre time."""
    index = {name: i + 1 for i, name in enumerate(vocabulary)}
    out = []
    for i, (row, seq) in enumerate(zip(fs.records.to_dict("records"), fs.kind("snippets"))):
        step = _snippet_seconds(fs, row)
        centres = (np.arange(seq.shape[0]) + 0.5) * step
        target = np.full(seq.shape[0], BACKGROUND, dtype=np.int64)
        for start, end, label in parse_segments(row.get("segments"), f"{fs.name} row {i}"):
            if label in index:
                target[(centres >= start) & (centres < end)] = index[label]
        out.append(target)
    return out


def anomaly_frame_labels(fs: FeatureSet) -> list[np.ndarray]:
    """0/1 per frame of each video from its temporal annotations (frame f at time f / fps)."""
    out = []
    for i, row in enumerate(fs.records.to_dict("records")):
        frames, fps = int(row["frames"]), float(row["fps"])
        times = np.arange(frames) / fps
        labels = np.zeros(frames, dtype=np.int64)
        for start, end, _ in parse_segments(row.get("segments"), f"{fs.name} row {i}"):
            labels[(times >= start) & (times < end)] = 1
        out.append(labels)
    return out
