"""``noise@<scale>``: add Gaussian noise of ``scale`` x each feature dimension's train spread."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from latentanon.errors import DataError, ModelError
from latentanon.features.featureset import FeatureSet
from latentanon.methods.base import Method
from latentanon.methods.config import TrainConfig


def train_feature_std(sets: Mapping[str, FeatureSet]) -> np.ndarray:
    """Per-dimension standard deviation over every train-split feature of every kind of every set."""
    rows: list[np.ndarray] = []
    for fs in sets.values():
        train = fs.split("train") if "split" in fs.records.columns else fs
        for items in train.arrays.values():
            rows.extend(np.asarray(a, dtype=np.float64).reshape(-1, fs.dim) for a in items)
    if not rows:
        raise DataError(f"noise method: no train features in sets {sorted(sets)}")
    return np.concatenate(rows).std(axis=0)


def noise_scale(name: str) -> float:
    if "@" not in name:
        raise ModelError(f"method {name!r}: give the noise scale as noise@<scale>, e.g. noise@0.2")
    try:
        scale = float(name.split("@", 1)[1])
    except ValueError as exc:
        raise ModelError(f"method {name!r}: the scale after '@' is not a number") from exc
    if not np.isfinite(scale) or scale < 0:
        raise ModelError(f"method {name!r}: the noise scale must be >= 0")
    return scale


class NoiseMethod(Method):
    """x + N(0, (scale * std)^2) per clip. Like every stochastic method the draw is fresh OS noise
    in a shared store, and keyed by (noise key, video id, kind) in evaluation (``Method.noise_rng``):
    batch invariant, and a new draw for each evaluation seed."""

    takes_argument = True
    stochastic = True

    def __init__(self, name: str, train: TrainConfig = TrainConfig()):
        super().__init__(name, train)
        self.scale = noise_scale(name)
        self.sigma: np.ndarray | None = None
        self.seed = 0

    @classmethod
    def suggest(cls, trial, name, train, tune):
        """A bare ``noise`` searches its scale (log-uniform in tune.noise_scale_range)."""
        from latentanon.methods.base import search_range

        if "@" in name:
            return name, train
        scale = trial.suggest_float("noise_scale", *search_range(tune, "noise_scale_range"), log=True)
        return f"noise@{scale:.4g}", train

    def _fit(self, sets, seed, checkpoint_dir) -> None:
        self.seed = int(seed)
        self.sigma = (self.scale * train_feature_std(sets)).astype(np.float32)

    def _transform_kind(self, kind, items, ids):
        out = []
        for a, video in zip(items, ids):
            rng = self.noise_rng(video, kind)
            a = np.asarray(a, dtype=np.float32)
            out.append(a + self.sigma * rng.standard_normal(a.shape).astype(np.float32))
        return out

    def state(self):
        return {"sigma": self.sigma, "seed": np.array([self.seed], dtype=np.int64)}

    def set_state(self, state) -> None:
        self.sigma = np.asarray(state["sigma"], dtype=np.float32)
        self.seed = int(state["seed"][0])
