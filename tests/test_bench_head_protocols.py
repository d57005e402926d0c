"""The val-only head-protocol benchmark: protocol parsing and one small run end to end."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_head_protocols as bench
from latentanon.tasks import fitting
from test_tuning import make_feature_sets, write_store


def test_protocols_parse_and_bad_ones_are_named():
    assert bench.parse_protocol("5:300") == (5, 300)
    for bad in ("5", "a:3", "0:300"):
        with pytest.raises(argparse.ArgumentTypeError, match=bad):
            bench.parse_protocol(bad)


def test_paired_val_drop_is_zero_for_identical_items_and_counts_discordance():
    labels = np.arange(10) % 3
    probs = np.eye(3)[labels] * 0.8 + 0.1
    same = {"correct": np.ones(10), "probabilities": probs, "labels": labels}
    out = bench.paired_val_drop("ar", [same, same], [same, same], 100, 0.95)
    assert (out["drop"], out["half_width"], out["discordance"], out["val_videos"]) == (0.0, 0.0, 0.0, 10)
    wrong = probs.copy()
    wrong[:4] = np.roll(wrong[:4], 1, axis=1)  # four videos now predicted wrong
    changed = {"correct": np.r_[np.zeros(4), np.ones(6)], "probabilities": wrong, "labels": labels}
    out = bench.paired_val_drop("ar", [same], [changed], 200, 0.95)
    assert out["drop"] == pytest.approx(0.4) and out["discordance"] == pytest.approx(0.4) and out["half_width"] > 0


def test_protocols_are_measured_on_val_and_recorded(tmp_path, monkeypatch):
    write_store(tmp_path / "features", make_feature_sets())
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"paths": {"workdir": str(tmp_path)}}))
    results = tmp_path / "head_protocols.json"
    monkeypatch.setattr(bench, "RESULTS", results)
    default_steps = fitting.HEAD_STEPS
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "bench",
            "--params",
            str(params),
            "--tasks",
            "ar",
            "--methods",
            "rotation",
            "noise@1",
            "--protocols",
            "1:20",
            "2:40",
            "--seeds",
            "0",
            "1",
            "--bootstrap",
            "50",
        ],
    )
    bench.main()
    assert default_steps == fitting.HEAD_STEPS  # the protocol's step count is not left behind
    record = json.loads(results.read_text())
    assert [(p["restarts"], p["steps"]) for p in record["protocols"]] == [(1, 20), (2, 40)]
    for protocol in record["protocols"]:
        ar = protocol["tasks"]["ar"]
        assert set(ar) == {"rotation", "noise@1"}
        assert all(r["val_videos"] == 9 and np.isfinite(r["half_width"]) for r in ar.values())
