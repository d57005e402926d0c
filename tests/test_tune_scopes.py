"""Tune measures what evaluate measures: every leakage scope (per-video means, long videos,
re-releases of a noisy method) judged by its worst, utility by the stronger head input form, and
the operating point picked with the gate's thresholds."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from latentanon.config import params_from_dict
from latentanon.tuning import objectives, operating_point
from latentanon.tuning.pareto import TrialPoint
from latentanon.tuning.trials import SearchData, _search_rows, head_inputs, run_trial, suggest
from test_tuning import make_feature_sets, tiny_params


def point(n, leakage, drops, normalized=None):
    return TrialPoint(n, leakage, 1.0 - max(drops.values()), drops, {}, leakage if normalized is None else normalized)


def test_gate_rule_prefers_the_trial_the_gate_would_approve():
    points = [
        point(0, 0.10, {"ar": 0.002, "tad": 0.005}, normalized=0.55),  # least leakage, but above 0.4
        point(1, 0.30, {"ar": 0.004, "tad": 0.009}),  # approvable
        point(2, 0.35, {"ar": 0.001, "tad": 0.001}),  # approvable, more leakage
        point(3, 0.05, {"ar": 0.020, "tad": 0.001}),  # a drop over budget
    ]
    chosen, branch = operating_point.gate_operating_point(points, 0.01, 0.4)
    assert (chosen.number, branch) == (1, "gate_approvable")
    # nothing approvable: pareto's rule with the same thresholds (here: within the drop budget)
    chosen, branch = operating_point.gate_operating_point(points[:1] + points[3:], 0.01, 0.4)
    assert (chosen.number, branch) == (0, "within_budget")
    with pytest.raises(ValueError):
        operating_point.gate_operating_point([], 0.01, 0.4)


def test_gate_thresholds_take_the_stricter_of_gate_and_tune(tmp_path):
    params = params_from_dict(
        {
            "paths": {"workdir": str(tmp_path)},
            "gate": {"max_utility_relative_drop": 0.02, "max_moving_normalized_leakage": 0.3},
            "tune": {"max_utility_drop": 0.015, "max_normalized_leakage": 0.4},
        }
    )
    assert operating_point.gate_thresholds(params.for_search()) == (0.015, 0.3)
    looser_tune = params_from_dict({"paths": {"workdir": str(tmp_path)}, "tune": {"max_utility_drop": 0.05}})
    assert operating_point.gate_thresholds(looser_tune.for_search())[0] == looser_tune.gate.max_utility_relative_drop


def test_worst_scope_is_the_objective_and_a_release_is_judged_against_raw_moving():
    raw = {
        "scopes": {
            "static": {"cmap": 0.9, "chance": 0.4},
            "moving": {"cmap": 0.8, "chance": 0.4},
            "video_mean": {"cmap": 0.4, "chance": 0.4},
        }
    }
    measured = {
        "scopes": {
            "static": {"cmap": 0.5, "chance": 0.4},
            "moving": {"cmap": 0.5, "chance": 0.4},
            "video_mean": {"cmap": 0.6, "chance": 0.4},
            "release": {"cmap": 0.6, "chance": 0.4},
        }
    }
    per_scope = objectives.scope_leakage(measured, raw)
    assert per_scope["static"] == pytest.approx(0.2) and per_scope["moving"] == pytest.approx(0.25)
    assert per_scope["release"] == pytest.approx(0.5)  # against raw moving clips
    assert math.isnan(per_scope["video_mean"])  # raw has no headroom there
    assert objectives.worst_scope(per_scope) == pytest.approx(0.5)
    assert math.isnan(objectives.worst_scope({"a": math.nan}))


@pytest.fixture(scope="module")
def data():
    sets = make_feature_sets(dim=16, per_split={"train": 10, "val": 6, "test": 4})
    return SearchData(
        {k: _search_rows(v) for k, v in sets.items() if k != "privacy_videos"},
        [_search_rows(sets["privacy_videos"])],
        "fp",
    )


def test_a_trial_reports_every_scope_and_a_noisy_method_its_re_release(tmp_path, data):
    params = tiny_params(tmp_path)
    tasks = ("ar",)
    raw = objectives.measure(data.task_sets, data.privacy, tasks, 0, head_inputs(params.for_search()))
    assert {"static", "moving", "video_mean", "untrimmed_mean", "anomaly_mean"} <= set(raw["scopes"])
    noisy = run_trial(
        data, params.for_search(), params.train.weights, replace(params.train, method="noise@2"), tasks, raw
    )
    assert "release" in noisy["scope_leakage"]
    assert noisy["leakage"] == pytest.approx(objectives.worst_scope(noisy["scope_leakage"]))
    # averaging 16 releases removes most of the fresh noise: the release scope leaks more
    assert noisy["scope_leakage"]["release"] > noisy["scope_leakage"]["moving"]
    clean = run_trial(
        data, params.for_search(), params.train.weights, replace(params.train, method="rotation"), tasks, raw
    )
    assert "release" not in clean["scope_leakage"]  # a deterministic method: every release is the same


def test_utility_reads_the_stronger_head_input_form(data):
    fs = data.task_sets["actions"]
    train, val = fs.split("train"), fs.split("val")
    both = objectives.stronger_head_utility("ar", train, val, 0, ("standardised", "principal_axes"))
    each = [
        objectives.stronger_head_utility("ar", train, val, 0, (form,)) for form in ("standardised", "principal_axes")
    ]
    assert both == max(each)
    assert np.isfinite(both)


def test_distil_searches_its_step_and_train_takes_the_choice(tmp_path):
    import json

    import optuna

    from latentanon import stages
    from latentanon.config import Layout

    params = tiny_params(tmp_path, methods=["distil"], distil_ar_step_range=[0.1, 0.25])
    _, train_cfg = suggest(optuna.trial.FixedTrial({"distil_ar_step": 0.2}), params.for_search())
    assert (train_cfg.method, train_cfg.distil.ar_step) == ("distil", 0.2)
    chosen = params_from_dict({"paths": {"workdir": str(tmp_path)}, "train": {"method": "distil"}})
    out = Layout.from_params(chosen).report_dir("tune")
    out.mkdir(parents=True, exist_ok=True)
    (out / "chosen.json").write_text(json.dumps({"method": "distil", "weights": {}, "distil": {"ar_step": 0.15}}))
    assert stages.chosen_train_config(chosen).distil.ar_step == 0.15
