"""The ablation benchmark's linear diagnostics remove / keep the subspaces they claim to."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from latentanon.features.featureset import FeatureSet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_adapter_variants as bench


def _sets(rng: np.random.Generator, dim: int = 6, videos: int = 40) -> dict[str, FeatureSet]:
    video_axis = np.eye(dim)[0] * 5.0  # videos differ along axis 0 only
    action_axis = np.eye(dim)[1] * 5.0  # actions differ along axis 1 only
    records = pd.DataFrame(
        {"video_id": [f"v{i}" for i in range(videos)], "split": "train", "label_id": np.arange(videos) % 2}
    )
    static, clips = [], []
    for i in range(videos):
        static.append((rng.normal() * video_axis + 0.1 * rng.normal(size=(4, dim))).astype(np.float32))
        clips.append(((i % 2) * action_axis + rng.normal(size=(5, dim))).astype(np.float32))
    return {"actions": FeatureSet("actions", records, {"static": static, "clips": clips})}


def test_video_projection_removes_what_separates_videos():
    sets = _sets(np.random.default_rng(0))
    mean, transform = bench.projection("video", 1, sets)
    static = sets["actions"].kind("static")
    before = np.array([s.mean(axis=0) for s in static])
    after = np.array([((s - mean) @ transform + mean).mean(axis=0) for s in static])
    assert before[:, 0].std() > 3.0
    assert after.std(axis=0).max() < 0.2  # video means now coincide


def test_action_projection_keeps_only_the_action_subspace():
    sets = _sets(np.random.default_rng(1))
    mean, transform = bench.projection("action", 1, sets)
    assert np.linalg.matrix_rank(transform, tol=1e-6) == 1
    clips = sets["actions"].kind("clips")
    projected = [((c - mean) @ transform + mean).mean(axis=0) for c in clips]
    gap = np.abs(np.mean(projected[1::2], axis=0) - np.mean(projected[0::2], axis=0))
    assert gap.max() > 3.0  # the two actions stay apart
