"""The val-only bottleneck benchmark: its AD grid override and one small run end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_bottleneck_val as bench
from latentanon.tasks import specs
from test_tuning import make_feature_sets, write_store


def test_ad_kernels_replace_the_temporal_extents_of_the_grid(monkeypatch):
    monkeypatch.setitem(specs.TASK_SPECS, "ad", specs.TASK_SPECS["ad"])
    default = specs.TASK_SPECS["ad"].grid
    bench.set_ad_kernels([1, 7])
    grid = specs.TASK_SPECS["ad"].grid
    assert [h["kernel"] for h in grid] == [1, 7]
    assert all((h["hidden"], h["weight_decay"]) == (default[0]["hidden"], default[0]["weight_decay"]) for h in grid)


def test_a_variant_is_measured_on_val_and_recorded(tmp_path, monkeypatch):
    write_store(tmp_path / "features", make_feature_sets())
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump({"paths": {"workdir": str(tmp_path)}, "train": {"bottleneck": {"steps": 30, "eval_every": 10}}})
    )
    results = tmp_path / "bottleneck_val.json"
    monkeypatch.setattr(bench, "RESULTS", results)
    monkeypatch.setitem(specs.TASK_SPECS, "ad", specs.TASK_SPECS["ad"])
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "bench",
            "small_code",
            '{"bottleneck": {"code_dim": 8}}',
            "--params",
            str(params),
            "--seeds",
            "0",
            "1",
            "--ad-kernels",
            "1",
        ],
    )
    bench.main()
    (record,) = json.loads(results.read_text())
    assert record["name"] == "small_code" and record["bottleneck"]["code_dim"] == 8
    assert [r["seed"] for r in record["runs"]] == [0, 1] and record["ad_kernels"] == [1]
    assert set(record["runs"][0]["drops"]) == {"ar", "tad", "ad"}
    assert all(np.isfinite(v) for v in record["mean"].values())
