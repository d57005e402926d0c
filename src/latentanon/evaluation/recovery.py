"""Feature recovery: how much of the raw features a linear map rebuilds from the anonymized ones."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet

RIDGE_ALPHAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # per training row, on standardised inputs


def _paired_rows(anonymized: Sequence[FeatureSet], raw: Sequence[FeatureSet], kinds: Sequence[str]):
    xs, ys = [], []
    for anon_fs, raw_fs in zip(anonymized, raw):
        if list(anon_fs.records["video_id"]) != list(raw_fs.records["video_id"]):
            raise DataError(f"feature recovery: sets {anon_fs.name!r} do not hold the same videos raw and anonymized")
        for kind in kinds:
            if kind not in anon_fs.arrays or kind not in raw_fs.arrays:
                continue
            for a, r in zip(anon_fs.kind(kind), raw_fs.kind(kind)):
                if len(a):
                    xs.append(np.asarray(a, dtype=np.float64).reshape(-1, anon_fs.dim))
                    ys.append(np.asarray(r, dtype=np.float64).reshape(-1, raw_fs.dim))
    if not xs:
        raise DataError("feature recovery: no paired features")
    return np.concatenate(xs), np.concatenate(ys)


def r_squared(target: np.ndarray, prediction: np.ndarray) -> float:
    """1 - SSE / SST pooled over every dimension (variance-weighted R^2)."""
    sse = float(((target - prediction) ** 2).sum())
    sst = float(((target - target.mean(axis=0)) ** 2).sum())
    return 1.0 - sse / sst if sst > 0 else float("nan")


def recovery_attack(
    anonymized: dict[str, FeatureSet],
    raw: dict[str, FeatureSet],
    kinds: Sequence[str] = ("static", "clips"),
) -> dict:
    """Feature recovery: a ridge regression from anonymized back to raw features, fitted on train,
    its penalty chosen on val, R^2 on test. Near 1: the method removed nothing a linear map cannot
    undo. ``anonymized`` / ``raw``: the same sets (same videos) by name."""
    names = [n for n in anonymized if n in raw]
    pieces = {}
    for split in ("train", "val", "test"):
        pieces[split] = _paired_rows(
            [anonymized[n].split(split) for n in names], [raw[n].split(split) for n in names], kinds
        )
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = pieces["train"], pieces["val"], pieces["test"]
    mean_x, mean_y = x_train.mean(axis=0), y_train.mean(axis=0)
    scale = x_train.std(axis=0) + 1e-9
    xs = (x_train - mean_x) / scale
    gram, cross = xs.T @ xs, xs.T @ (y_train - mean_y)
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in RIDGE_ALPHAS:
        coef = np.linalg.solve(gram + alpha * len(xs) * np.eye(len(gram)), cross)
        val_r2 = r_squared(y_val, (x_val - mean_x) / scale @ coef + mean_y)
        if best is None or val_r2 > best[0]:
            best = (val_r2, alpha, coef)
    assert best is not None  # RIDGE_ALPHAS is a non-empty constant
    val_r2, alpha, coef = best
    return {
        "r2": r_squared(y_test, (x_test - mean_x) / scale @ coef + mean_y),
        "val_r2": val_r2,
        "alpha": alpha,
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "kinds": list(kinds),
    }
