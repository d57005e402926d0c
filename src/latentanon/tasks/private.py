"""Private attributes as targets: the labels only attackers and label-using methods may read.

Methods below evaluation (LEACE, the adversarial adapter) and the attack suite both build their
inputs here, so neither reaches into the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latentanon.data.layouts import ATTRIBUTE_COLUMNS
from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet

ATTRIBUTES = ATTRIBUTE_COLUMNS


@dataclass
class AttackData:
    """Clip-level inputs and video-level labels of one split."""

    x: np.ndarray  # (n_clips, d)
    video: np.ndarray  # (n_clips,) index of the clip's video
    labels: dict[str, np.ndarray]  # attribute -> (n_videos,) class id, -1 where unknown

    @property
    def n_videos(self) -> int:
        return int(next(iter(self.labels.values())).shape[0]) if self.labels else 0


def _as_sets(sets: FeatureSet | Sequence[FeatureSet]) -> list[FeatureSet]:
    return [sets] if isinstance(sets, FeatureSet) else list(sets)


def attack_data(sets: FeatureSet | Sequence[FeatureSet], attributes: Sequence[str], kind: str = "static") -> AttackData:
    """Stack the ``kind`` clips of every video that has them, with its attribute labels."""
    xs: list[np.ndarray] = []
    videos: list[np.ndarray] = []
    labels: dict[str, list[np.ndarray]] = {a: [] for a in attributes}
    offset = 0
    for fs in _as_sets(sets):
        if kind not in fs.arrays or len(fs) == 0:
            continue
        missing = [a for a in attributes if a not in fs.records.columns]
        if missing:
            raise DataError(f"feature set {fs.name!r}: no private label column(s) {missing} for the attacker")
        for i, clips in enumerate(fs.kind(kind)):
            xs.append(np.asarray(clips, dtype=np.float32).reshape(-1, fs.dim))
            videos.append(np.full(xs[-1].shape[0], offset + i))
        for a in attributes:
            column = fs.records[a].to_numpy(dtype=np.float64, na_value=np.nan)
            labels[a].append(np.where(np.isfinite(column), column, -1).astype(np.int64))
        offset += len(fs)
    if not xs:
        raise DataError(f"no {kind!r} features in feature set(s) {[fs.name for fs in _as_sets(sets)]}")
    return AttackData(
        x=np.concatenate(xs),
        video=np.concatenate(videos),
        labels={a: np.concatenate(v) for a, v in labels.items()},
    )
