"""LEACE linear concept erasure (EleutherAI concept-erasure) of every private attribute at once."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from concept_erasure import LeaceFitter

from latentanon.errors import DataError
from latentanon.evaluation.privacy import attack_data
from latentanon.features.featureset import FeatureSet

PRIVACY_SETS = ("privacy_videos", "privacy_images")


def private_one_hot(labels: Mapping[str, np.ndarray]) -> np.ndarray:
    """Concatenated one-hot codes of every attribute (an unknown label, -1, is all zeros)."""
    blocks = []
    for values in labels.values():
        values = np.asarray(values)
        width = int(values.max(initial=-1)) + 1
        block = np.zeros((values.shape[0], max(width, 1)))
        known = values >= 0
        block[np.flatnonzero(known), values[known]] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1)


def fit_leace(sets: Mapping[str, FeatureSet], attributes: Sequence[str]) -> Callable[[FeatureSet], FeatureSet]:
    """Fit the eraser on the privacy sets' train static clips; the transform erases every kind."""
    train = [sets[name].split("train") for name in PRIVACY_SETS if name in sets]
    if not train:
        raise DataError(f"leace baseline needs a privacy set ({', '.join(PRIVACY_SETS)}); got {sorted(sets)}")
    data = attack_data(train, attributes, "static")
    concept = private_one_hot({a: v[data.video] for a, v in data.labels.items()})
    fitter = LeaceFitter.fit(torch.from_numpy(data.x.astype(np.float64)), torch.from_numpy(concept))
    eraser = fitter.eraser
    dim = data.x.shape[1]

    def transform(fs: FeatureSet) -> FeatureSet:
        if fs.dim != dim:
            raise DataError(f"leace baseline: feature set {fs.name!r} has width {fs.dim}, fitted on {dim}")
        arrays = {}
        for kind, items in fs.arrays.items():
            # One eraser call per kind: the map is affine, so batching changes nothing but speed.
            lengths = [int(np.shape(a)[0]) for a in items]
            if not items:
                arrays[kind] = []
                continue
            stacked = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.float64) for a in items]))
            erased = eraser(stacked).numpy().astype(np.float32)
            arrays[kind] = np.split(erased, np.cumsum(lengths)[:-1])
        return fs.with_arrays(arrays, anonymizer="leace")

    return transform
