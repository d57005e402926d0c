"""In-memory form of one stored feature set: a table of videos and their feature arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Feature kinds, each one (n_k, d) array per video:
#   "clips":    pooled features of evenly spaced 16-frame clips of a trimmed video (n_k = clips_per_video)
#   "static":   features of static clips (one frame tiled to a full clip); images have n_k = 1
#   "snippets": the (T, d) sequence of 16-frame snippets with stride 16 of a long video
KINDS = ("clips", "static", "snippets")


@dataclass
class FeatureSet:
    name: str
    records: pd.DataFrame  # one row per video (manifest columns, incl. video_id, split)
    arrays: dict[str, list[np.ndarray]]  # kind -> list aligned with records rows
    meta: dict = field(default_factory=dict)  # encoder identity, manifest hash, params, ...

    def __post_init__(self) -> None:
        self.records = self.records.reset_index(drop=True)
        for kind, items in self.arrays.items():
            if len(items) != len(self.records):
                raise ValueError(
                    f"feature set {self.name!r}: kind {kind!r} has {len(items)} entries for {len(self.records)} records"
                )

    def __len__(self) -> int:
        return len(self.records)

    @property
    def dim(self) -> int:
        for items in self.arrays.values():
            for a in items:
                return int(a.shape[-1])
        raise ValueError(f"feature set {self.name!r} holds no features")

    def kind(self, kind: str) -> list[np.ndarray]:
        if kind not in self.arrays:
            raise KeyError(f"feature set {self.name!r} has no {kind!r} features (has {sorted(self.arrays)})")
        return self.arrays[kind]

    def subset(self, rows: np.ndarray | pd.Series | list) -> FeatureSet:
        """Rows selected by a boolean mask or integer positions."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return FeatureSet(
            name=self.name,
            records=self.records.iloc[idx].reset_index(drop=True),
            arrays={k: [v[i] for i in idx] for k, v in self.arrays.items()},
            meta=dict(self.meta),
        )

    def split(self, split: str) -> FeatureSet:
        return self.subset((self.records["split"] == split).to_numpy())

    def padded(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(N, T_max, d) zero-padded array and (N, T_max) boolean mask of real positions."""
        items = self.kind(kind)
        t_max = max((a.shape[0] for a in items), default=0)
        out = np.zeros((len(items), t_max, self.dim), dtype=np.float32)
        mask = np.zeros((len(items), t_max), dtype=bool)
        for i, a in enumerate(items):
            out[i, : a.shape[0]] = a
            mask[i, : a.shape[0]] = True
        return out, mask

    def with_arrays(self, arrays: dict[str, list[np.ndarray]], **meta) -> FeatureSet:
        """Same records, new arrays (e.g. after anonymization)."""
        return FeatureSet(name=self.name, records=self.records.copy(), arrays=arrays, meta={**self.meta, **meta})
