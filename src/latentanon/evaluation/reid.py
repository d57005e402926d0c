"""Re-identification without training: does a video's nearest neighbour show the same person?

Each video is one vector (the mean of its clips of one kind). Every test video whose identity has
another test video is a query; the gallery is every other test video. Top-1 counts queries whose
cosine nearest neighbour has the query's identity. Static clips give identity re-identification;
moving clips give gait retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet


def nearest_neighbour_top1(vectors: np.ndarray, identities: np.ndarray) -> dict:
    """Top-1 identity retrieval by cosine similarity, with its chance level (random gallery pick)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    identities = np.asarray(identities).astype(str)
    if vectors.shape[0] != identities.shape[0]:
        raise ValueError(f"nearest_neighbour_top1: {vectors.shape[0]} vectors for {identities.shape[0]} identities")
    n = vectors.shape[0]
    same = identities[:, None] == identities[None, :]
    np.fill_diagonal(same, False)
    queries = np.flatnonzero(same.any(axis=1))
    if n < 2 or queries.size == 0:
        return {"top1": float("nan"), "chance": float("nan"), "n_queries": 0, "n_gallery": n}
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    best = np.argmax(similarity[queries], axis=1)
    hits = identities[best] == identities[queries]
    chance = same[queries].sum(axis=1) / (n - 1)
    return {
        "top1": float(hits.mean()),
        "chance": float(chance.mean()),
        "n_queries": int(queries.size),
        "n_gallery": int(n - 1),
    }


def video_vectors(sets: FeatureSet | Sequence[FeatureSet], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``kind`` feature and identity of every video (sets without that kind are skipped)."""
    sets = [sets] if isinstance(sets, FeatureSet) else list(sets)
    vectors: list[np.ndarray] = []
    identities: list[str] = []
    for fs in sets:
        if kind not in fs.arrays or len(fs) == 0:
            continue
        if "identity" not in fs.records.columns:
            raise DataError(f"feature set {fs.name!r}: no identity column for re-identification")
        vectors.extend(np.asarray(a, dtype=np.float64).reshape(-1, fs.dim).mean(axis=0) for a in fs.kind(kind))
        identities.extend(fs.records["identity"].astype(str).tolist())
    if not vectors:
        raise DataError(f"no {kind!r} features to re-identify in {[fs.name for fs in sets]}")
    return np.stack(vectors), np.asarray(identities)


def reidentification(test: FeatureSet | Sequence[FeatureSet]) -> dict:
    """Identity re-identification top-1 from static (appearance) clips."""
    return nearest_neighbour_top1(*video_vectors(test, "static"))


def gait_retrieval(test: FeatureSet | Sequence[FeatureSet]) -> dict:
    """Identity retrieval top-1 from moving clips (how a person moves, plus what still leaks)."""
    return nearest_neighbour_top1(*video_vectors(test, "clips"))
