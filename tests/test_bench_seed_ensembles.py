"""The seed-ensemble benchmark: half-widths per ensemble size from saved per-video items."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_seed_ensembles as bench
from latentanon.evaluation.items import save_items


def _ar_items(labels: np.ndarray, right: np.ndarray) -> dict:
    """AR items whose argmax is the label where ``right``, the next class elsewhere."""
    peak = np.where(right, labels, (labels + 1) % 3)
    probabilities = np.full((len(labels), 3), 0.1)
    probabilities[np.arange(len(labels)), peak] = 0.8
    return {"utility": {"ar": {"correct": right.astype(float), "probabilities": probabilities, "labels": labels}}}


def test_half_widths_per_ensemble_size_and_the_videos_a_target_needs(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 3
    folder = tmp_path / "reports" / "evaluate" / "items"
    for seed in ("0", "1", "2"):
        raw_right = rng.random(200) < 0.8
        save_items(folder / f"raw__{seed}.npz", _ar_items(labels, raw_right))
        save_items(folder / f"copy__{seed}.npz", _ar_items(labels, raw_right))  # raw's own outputs
        save_items(folder / f"worse__{seed}.npz", _ar_items(labels, raw_right & (rng.random(200) < 0.8)))
    out = tmp_path / "seed_ensembles.json"
    monkeypatch.setattr(sys, "argv", ["bench", "--workdir", str(tmp_path), "--resamples", "200", "--out", str(out)])
    assert bench.main() == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"copy", "worse"} and rows["worse"]["test_videos"] == 200
    assert rows["copy"]["half_width_by_seeds"] == [0.0, 0.0, 0.0]
    worse = rows["worse"]
    assert len(worse["half_width_by_seeds"]) == 3 and all(w > 0 for w in worse["half_width_by_seeds"])
    assert worse["half_width_times_sqrt_videos"] == pytest.approx(worse["half_width_by_seeds"][-1] * math.sqrt(200))
    assert worse["videos_for_target"] == math.ceil((worse["half_width_times_sqrt_videos"] / 0.025) ** 2)
    assert "videos for 0.025" in capsys.readouterr().out


def test_a_workdir_without_items_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench", "--workdir", str(tmp_path), "--out", str(tmp_path / "x.json")])
    assert bench.main() == 2
    assert "no saved items" in capsys.readouterr().err
