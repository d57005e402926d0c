"""Gaussian-noise baseline: add noise scaled to each feature dimension's spread."""
from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping

import numpy as np

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet


def train_feature_std(sets: Mapping[str, FeatureSet]) -> np.ndarray:
    """Per-dimension standard deviation over every train-split feature of every kind of every set."""
    rows = []
    for fs in sets.values():
        train = fs.split("train") if "split" in fs.records.columns else fs
        for items in train.arrays.values():
            rows.extend(np.asarray(a, dtype=np.float64).reshape(-1, fs.dim) for a in items)
    if not rows:
        raise DataError(f"noise baseline: no train features in sets {sorted(sets)}")
    return np.concatenate(rows).std(axis=0)


def noise_transform(std: np.ndarray, scale: float, seed: int) -> Callable[[FeatureSet], FeatureSet]:
    """x + N(0, (scale * std)^2), independently per clip; the same set gets the same noise on every call."""
    if scale < 0:
        raise ValueError(f"noise baseline: scale must be >= 0, got {scale}")
    sigma = (scale * np.asarray(std, dtype=np.float64)).astype(np.float32)

    def transform(fs: FeatureSet) -> FeatureSet:
        if fs.dim != sigma.shape[0]:
            raise DataError(f"noise baseline: feature set {fs.name!r} has width {fs.dim}, fitted on {sigma.shape[0]}")
        rng = np.random.default_rng([seed, zlib.crc32(fs.name.encode())])
        arrays = {
            kind: [
                (np.asarray(a, dtype=np.float32) + sigma * rng.standard_normal(np.shape(a)).astype(np.float32))
                for a in items
            ]
            for kind, items in sorted(fs.arrays.items())
        }
        return fs.with_arrays(arrays, anonymizer=f"noise@{scale:g}")

    return transform
