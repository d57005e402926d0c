"""The identity baseline: share the raw features unchanged (the leakage every method is measured against)."""
from __future__ import annotations

import numpy as np

from latentanon.features.featureset import FeatureSet


def identity_transform(fs: FeatureSet) -> FeatureSet:
    """A copy of ``fs`` with the same feature values."""
    arrays = {kind: [np.array(a, dtype=np.float32, copy=True) for a in items] for kind, items in fs.arrays.items()}
    return fs.with_arrays(arrays, anonymizer="identity")
