"""The statistical-power benchmark: its reading of metrics.json and its 1/sqrt(n) prediction."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_power as bench
from latentanon.config import Layout, load_params, params_from_dict
from latentanon.evaluation.items import save_items
from test_tuning import make_feature_sets, write_store


def metrics_tree(half_widths: dict[str, dict[str, float]], videos: dict[str, int]) -> dict:
    utility = {}
    for task, methods in half_widths.items():
        block = {"raw": {"ensemble_value": 0.7}, "trained_unseen": {"relative_drop_interval": [0.0, 0.2]}}
        for method, hw in methods.items():
            block |= {
                f"{method}_relative_drop": 0.01,
                f"{method}_relative_drop_interval": [0.01 - hw, 0.01 + hw],
                f"{method}_relative_drop_half_width": hw,
                f"{method}_relative_drop_test_videos": videos[task],
                f"{method}_relative_drop_seed_interval": [0.0, 0.02],
            }
        utility[task] = block
    privacy = {
        "raw": {"normalized_leakage_half_width": 0.0, "moving": {"normalized_leakage_half_width": 0.0}},
        "trained": {"normalized_leakage_half_width": 0.03, "moving": {"normalized_leakage_half_width": 0.05}},
    }
    return {
        "utility": utility,
        "privacy": privacy,
        "seeds": {"evaluate": [0], "audit_bias": [0]},
        "confidence": 0.95,
        "decisions": {"utility_drop_ar": {"decided": True, "passed": True, "interval": [-0.01, 0.005]}},
    }


def test_widths_are_read_per_task_and_method_and_unseen_is_not_a_method():
    widths = bench.utility_widths(metrics_tree({"ar": {"trained": 0.04, "noise@1": 0.06}}, {"ar": 576}))
    assert set(widths["ar"]) == {"trained", "noise@1"}
    assert widths["ar"]["trained"]["half_width"] == 0.04 and widths["ar"]["trained"]["test_videos"] == 576
    assert bench.leakage_widths(metrics_tree({}, {})) == {"trained": {"static": 0.03, "moving": 0.05}}


def test_prediction_scales_with_one_over_the_square_root_of_the_videos():
    main = {"half_width": 0.06, "test_videos": 576}
    assert bench.predicted_half_width(main, 576 * 4) == pytest.approx(0.03)
    rows = bench.compare(
        bench.utility_widths(metrics_tree({"ar": {"trained": 0.02}}, {"ar": 2304})),
        bench.utility_widths(metrics_tree({"ar": {"trained": 0.05}}, {"ar": 576})),
    )
    assert rows[0]["met"] and rows[0]["predicted_half_width"] == pytest.approx(0.025)
    assert not bench.compare(bench.utility_widths(metrics_tree({"ar": {"trained": 0.03}}, {"ar": 9})), None)[0]["met"]


def test_overrides_are_valid_params_and_a_summary_is_written(tmp_path, monkeypatch, capsys):
    overrides = bench.power_overrides(str(tmp_path / "power"), 8, 26, 4)
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", overrides)
    assert (
        params.data.test_actions_multiplier,
        params.data.test_untrimmed_multiplier,
        params.data.test_anomaly_multiplier,
    ) == (8, 26, 4)
    reports = tmp_path / "power" / "reports"
    (reports / "gate").mkdir(parents=True)
    (reports / "gate" / "summary.json").write_text(json.dumps({"seconds": 2.5}))
    (reports / "metrics.json").write_text(
        json.dumps(metrics_tree({"ar": {"trained": 0.02}, "tad": {"trained": 0.03}}, {"ar": 4608, "tad": 2496}))
    )
    # the main job's metrics.json from an earlier release, which labelled the trained method aam
    main_metrics = tmp_path / "main.json"
    main_metrics.write_text(
        json.dumps(metrics_tree({"ar": {"aam": 0.05}, "tad": {"aam": 0.11}}, {"ar": 576, "tad": 96}))
    )
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({}))
    out = tmp_path / "power.json"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "bench",
            "--params",
            str(params_file),
            "--workdir",
            str(tmp_path / "power"),
            "--main-metrics",
            str(main_metrics),
            "--skip-run",
            "--out",
            str(out),
        ],
    )
    assert bench.main() == 0
    record = json.loads(out.read_text())
    assert record["stage_seconds"] == {"gate": 2.5} and record["wall_seconds"] is None
    assert not record["utility_targets_met"]  # TAD 0.03 > 0.025
    assert record["leakage_targets_met"]
    tad = next(r for r in record["utility"] if r["task"] == "tad")
    assert tad["predicted_half_width"] == pytest.approx(0.11 * (96 / 2496) ** 0.5)
    assert "NOT met" in capsys.readouterr().out
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_workdir_without_metrics_is_named(tmp_path, monkeypatch, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({}))
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "bench",
            "--params",
            str(params_file),
            "--workdir",
            str(tmp_path / "none"),
            "--skip-run",
            "--out",
            str(tmp_path / "p.json"),
        ],
    )
    assert bench.main() == 2
    assert "metrics.json: no metrics" in capsys.readouterr().err


def test_identity_weights_draw_whole_people():
    identities = np.array(["a", "b", "a", "c", "b", "a"])
    weights = bench.identity_weights(identities, 200)
    assert weights.shape == (200, 6)
    for person in ("a", "b", "c"):
        videos = np.flatnonzero(identities == person)
        assert (weights[:, videos] == weights[:, videos[:1]]).all()  # a person's videos move together
    # three people drawn per resample: the draws of a, b and c add up to 3
    assert ((weights[:, 0] + weights[:, 1] + weights[:, 3]) == 3).all()


def test_identity_bootstrap_reads_evaluate_items_and_test_identities(tmp_path):
    sets = make_feature_sets()
    write_store(tmp_path / "features", sets)
    layout = Layout.from_params(params_from_dict({"paths": {"workdir": str(tmp_path)}}))
    test = sets["actions"].split("test")
    labels = test.records["label_id"].to_numpy()
    n, classes = len(labels), int(labels.max()) + 1
    probabilities = np.eye(classes)[labels] * 0.8 + 0.1 / classes
    raw = {"correct": np.ones(n), "probabilities": probabilities, "labels": labels}
    wrong = probabilities.copy()
    wrong[:2] = np.roll(wrong[:2], 1, axis=1)  # two videos now predicted wrong
    changed = {"correct": np.r_[np.zeros(2), np.ones(n - 2)], "probabilities": wrong, "labels": labels}
    items = layout.report_dir("evaluate") / "items"
    items.mkdir(parents=True)
    for seed in (0, 1):
        for name, tree in (("raw", raw), ("same", raw), ("changed", changed)):
            save_items(items / f"{name}__{seed}.npz", {"utility": {"ar": tree}})
    out = bench.identity_bootstrap(layout, [0, 1], n_resamples=200)
    assert set(out) == {"ar"} and set(out["ar"]) == {"same", "changed"}
    same, moved = out["ar"]["same"], out["ar"]["changed"]
    assert (same["drop"], same["half_width"]) == (0.0, 0.0)
    assert moved["drop"] == pytest.approx(2 / n) and moved["half_width"] > 0
    assert (moved["identities"], moved["test_videos"]) == (test.records["identity"].nunique(), n)
    assert bench.identity_bootstrap(layout, [5], n_resamples=10) == {}  # no items for that seed
