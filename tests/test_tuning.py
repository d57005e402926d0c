"""Optuna loss-weight search: Pareto front and selection rule, storage, resume, the tune stage."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, replace

import numpy as np
import optuna
import pandas as pd
import pytest

from latentanon.config import Layout, params_from_dict
from latentanon.features.featureset import FeatureSet
from latentanon.tuning import objectives, operating_point, search
from latentanon.tuning.pareto import TrialPoint, choose_operating_point, pareto_front, plot_front
from latentanon.tuning.trials import SearchData, _search_rows, run_trial, suggest

ATTRIBUTE_CLASSES = {"skin_tone": 3, "gender": 2, "clothing": 3, "face": 3}
ACTIONS = ("wave", "jump", "sit")


def make_feature_sets(dim: int = 16, per_split: dict | None = None, seed: int = 0) -> dict[str, FeatureSet]:
    """Structured features: action/anomaly direction + private-attribute directions + noise.

    Identities are disjoint across splits; static clips carry only the attribute part.
    """
    rng = np.random.default_rng(seed)
    per_split = per_split or {"train": 18, "val": 9, "test": 6}
    action_dir = rng.normal(size=(len(ACTIONS), dim)).astype(np.float32)
    anomaly_dir = rng.normal(size=dim).astype(np.float32)
    attribute_dir = {a: rng.normal(size=(k, dim)).astype(np.float32) for a, k in ATTRIBUTE_CLASSES.items()}

    def base_records(set_name: str) -> list[dict]:
        rows = []
        for split, n in per_split.items():
            for i in range(n):
                row = {
                    "video_id": f"{set_name}-{split}-{i}",
                    "path": f"{set_name}/{split}/{i}.mp4",
                    "set": set_name,
                    "split": split,
                    "identity": f"{split}-{i % 3}",
                    "frames": 128,
                    "fps": 16.0,
                    "width": 32,
                    "height": 32,
                    "checksum": "0" * 64,
                }
                # every class of every attribute appears in every split
                row.update({a: int((i + j) % k) for j, (a, k) in enumerate(ATTRIBUTE_CLASSES.items())})
                rows.append(row)
        return rows

    def private(row: dict) -> np.ndarray:
        return sum(attribute_dir[a][row[a]] for a in ATTRIBUTE_CLASSES)

    def noise(*shape: int) -> np.ndarray:
        return (0.3 * rng.normal(size=shape)).astype(np.float32)

    sets = {}
    rows = base_records("actions")
    for i, row in enumerate(rows):
        row.update({"label_id": i % len(ACTIONS), "label": ACTIONS[i % len(ACTIONS)], "segments": []})
    sets["actions"] = FeatureSet(
        "actions",
        pd.DataFrame(rows),
        {
            "clips": [action_dir[r["label_id"]] + private(r) + noise(2, dim) for r in rows],
            "static": [private(r) + noise(2, dim) for r in rows],
        },
    )
    rows = base_records("untrimmed")
    snippets = []
    for i, row in enumerate(rows):
        label = ACTIONS[i % len(ACTIONS)]
        row.update({"label_id": -1, "label": "", "segments": [[2.0, 5.0, label]]})
        seq = private(row) + noise(8, dim)
        seq[2:5] += action_dir[i % len(ACTIONS)]
        snippets.append(seq)
    sets["untrimmed"] = FeatureSet(
        "untrimmed", pd.DataFrame(rows), {"snippets": snippets, "static": [private(r) + noise(2, dim) for r in rows]}
    )
    rows = base_records("anomaly")
    snippets = []
    for i, row in enumerate(rows):
        anomalous = i % 2
        row.update(
            {"label_id": -1, "label": "", "anomaly": anomalous, "segments": [[3.0, 6.0, "fall"]] if anomalous else []}
        )
        seq = private(row) + noise(8, dim)
        if anomalous:
            seq[3:6] += 2 * anomaly_dir
        snippets.append(seq)
    sets["anomaly"] = FeatureSet(
        "anomaly", pd.DataFrame(rows), {"snippets": snippets, "static": [private(r) + noise(2, dim) for r in rows]}
    )
    rows = base_records("privacy_videos")
    for row in rows:
        row.update({"label_id": -1, "label": ""})
    sets["privacy_videos"] = FeatureSet(
        "privacy_videos",
        pd.DataFrame(rows),
        {
            "clips": [private(r) + noise(2, dim) for r in rows],
            "static": [private(r) + noise(2, dim) for r in rows],
        },
    )
    return sets


def write_store(uri, sets: dict[str, FeatureSet]) -> None:
    from latentanon.features.store import write_feature_set

    for fs in sets.values():
        write_feature_set(str(uri), fs)


def tiny_params(workdir, **tune) -> object:
    return params_from_dict(
        {
            "paths": {"workdir": str(workdir)},
            "tune": {"n_trials": 2, "epochs_per_trial": 1, **tune},
            "train": {"adapter": {"blocks": 1, "heads": 2}, "batch_size": 32, "lr": 1e-3},
        }
    )


# ----------------------------------------------------------------------------- Pareto + rule


def point(n, leakage, utility, drops, normalized_leakage=float("nan")):
    return TrialPoint(n, leakage, utility, drops, {"w_lc": 1.0, "w_b": 1.0, "w_t": 1.0}, normalized_leakage)


def study_of(points):
    """An in-memory Optuna study holding ``points`` as completed trials (slot = point number)."""
    import optuna

    study = optuna.create_study(directions=list(search.DIRECTIONS))
    for p in points:
        study.add_trial(
            optuna.trial.create_trial(
                values=[p.leakage, p.utility],
                user_attrs={"slot": p.number, "drops": p.drops},
                params={},
                distributions={},
            )
        )
    return study


def test_pareto_front_is_optunas_best_trials_on_hand_made_points(tmp_path):
    points = [
        point(0, 0.50, 1.00, {"ar": 0.0}),
        point(1, 0.30, 0.99, {"ar": 0.01}),
        point(2, 0.40, 0.98, {"ar": 0.02}),  # dominated by 1
        point(3, 0.20, 0.90, {"ar": 0.10}),
        point(4, 0.60, 0.95, {"ar": 0.05}),  # dominated by 0
    ]
    study = study_of(points)
    front = pareto_front(study, operating_point.trial_point)
    assert [p.number for p in front] == [3, 1, 0]
    assert front[1].drops == {"ar": 0.01}
    # Optuna's own plot, with the chosen operating point marked on it
    import matplotlib

    chosen, _ = choose_operating_point(search.trial_points(study), max_utility_drop=0.01)
    style = matplotlib.rcParams["axes.facecolor"]
    path = plot_front(study, chosen, raw_leakage=0.8, path=tmp_path / "pareto.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert matplotlib.rcParams["axes.facecolor"] == style, "Optuna's plot style leaked into later figures"


def test_selection_rule_least_leakage_within_budget_then_fallback():
    points = [
        point(0, 0.50, 1.00, {"ar": 0.0, "tad": 0.0}),
        point(1, 0.30, 0.995, {"ar": 0.005, "tad": 0.008}),
        point(2, 0.25, 0.99, {"ar": 0.002, "tad": 0.02}),  # less leakage but one task over budget
        point(3, 0.30, 0.990, {"ar": 0.009, "tad": 0.001}),  # ties 1 on leakage, lower utility
    ]
    chosen, branch = choose_operating_point(points, max_utility_drop=0.01)
    assert (chosen.number, branch) == (1, "within_budget")
    chosen, branch = choose_operating_point(points, max_utility_drop=0.03)
    assert (chosen.number, branch) == (2, "within_budget")
    over = [point(5, 0.2, 0.9, {"ar": 0.1}), point(6, 0.4, 0.95, {"ar": 0.05}), point(7, 0.3, 0.95, {"ar": 0.05})]
    chosen, branch = choose_operating_point(over, max_utility_drop=0.01)
    assert (chosen.number, branch) == (5, "fallback")  # nothing meets either target: least leakage


def test_selection_rule_past_the_utility_budget_keeps_to_the_privacy_target():
    over = [
        point(5, 0.20, 0.90, {"ar": 0.10}, 0.15),
        point(6, 0.30, 0.95, {"ar": 0.05}, 0.35),
        point(7, 0.40, 0.97, {"ar": 0.03}, 0.60),
    ]
    chosen, branch = choose_operating_point(over, max_utility_drop=0.01, max_normalized_leakage=0.4)
    assert (chosen.number, branch) == (6, "private_fallback")  # trial 7 loses less utility but leaks
    chosen, branch = choose_operating_point(over, max_utility_drop=0.01, max_normalized_leakage=0.1)
    assert (chosen.number, branch) == (5, "fallback")
    with pytest.raises(ValueError):
        choose_operating_point([], 0.01)


# ----------------------------------------------------------------------------- storage and resume


def test_storage_resolution_env_over_params_over_default(tmp_path, monkeypatch):
    layout_params = params_from_dict({"paths": {"workdir": str(tmp_path)}})
    layout = Layout.from_params(layout_params)
    monkeypatch.delenv(search.STORAGE_ENV, raising=False)
    assert (
        search.resolve_storage(layout_params.for_search(), layout)
        == f"sqlite:///{(tmp_path / 'reports/tune/study.db').resolve()}"
    )
    with_url = params_from_dict({"paths": {"workdir": str(tmp_path)}, "tune": {"storage": "sqlite:///x.db"}})
    assert search.resolve_storage(with_url.for_search(), layout) == "sqlite:///x.db"
    monkeypatch.setenv(search.STORAGE_ENV, "postgresql://u:secret@db/optuna")
    assert search.resolve_storage(with_url.for_search(), layout) == "postgresql://u:secret@db/optuna"
    assert "secret" not in search._redacted("postgresql://u:secret@db/optuna")


class Interrupted(Exception):
    pass


def test_interrupted_study_resumes_to_n_completed_trials(tmp_path):
    params = tiny_params(tmp_path, n_trials=5)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    calls = []

    def objective(trial):
        x = trial.suggest_float("w_lc", 1.0, 10.0, log=True)
        calls.append(trial.number)
        if len(calls) == 3:
            raise Interrupted("killed mid-trial")
        return x, 1.0 / x

    study = search.open_study(params.for_search(), url, "resume-test")
    with pytest.raises(Interrupted):
        search.optimize(study, objective, n_trials=5)
    assert len(search.completed(study)) == 2
    # a new process: reopen the same study from storage and finish it
    reopened = search.open_study(params.for_search(), url, "resume-test")
    ran = search.optimize(reopened, objective, n_trials=5)
    states = [t.state for t in reopened.get_trials(deepcopy=False)]
    assert len(search.completed(reopened)) == 5
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    assert ran == 3
    # already complete: nothing more runs
    assert search.optimize(search.open_study(params.for_search(), url, "resume-test"), objective, n_trials=5) == 0


def test_bad_search_range_is_a_config_error(tmp_path):
    from latentanon.config import ConfigError

    trial = optuna.trial.FixedTrial({"w_lc": 10.0, "w_t": 1.0, "w_b": 1.0, "temperature": 0.1, "lr": 0.005})
    weights, train_cfg = suggest(trial, tiny_params(tmp_path).for_search())
    assert (weights.latent_consistency, weights.temperature, train_cfg.lr) == (10.0, 0.1, 0.005)
    with pytest.raises(ConfigError, match="temperature_range"):
        suggest(trial, tiny_params(tmp_path, temperature_range=[0.5]).for_search())
    with pytest.raises(ConfigError, match="w_lc_range"):
        suggest(trial, tiny_params(tmp_path, w_lc_range=[0.0, 1.0]).for_search())


# ----------------------------------------------------------------------------- the stage


@pytest.mark.slow
def test_run_search_end_to_end_resumes_and_logs_nested_runs(tmp_path):
    import mlflow

    write_store(tmp_path / "features", make_feature_sets())
    params = tiny_params(tmp_path, n_trials=2, temperature_range=[0.05, 0.5])
    layout = Layout.from_params(params)
    summary = search.run_search(params.for_search(), params.tracked(), layout)
    assert summary["trials_complete"] == 2 and summary["trials_run_here"] == 2
    out = layout.report_dir("tune")
    for name in ("pareto.json", "pareto.png", "trials.csv", "chosen.json", "study.db"):
        assert (out / name).exists(), name
    chosen = json.loads((out / "chosen.json").read_text())
    assert set(chosen["weights"]) == {"latent_consistency", "utility", "privacy", "temperature"}
    assert 0.05 <= chosen["weights"]["temperature"] <= 0.5
    trials = pd.read_csv(out / "trials.csv")
    assert trials["chosen"].sum() == 1 and set(trials["state"]) == {"COMPLETE"}
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["raw"]["leakage"] > 0 and pareto["n_complete"] == 2

    # raising n_trials continues the same study: only the missing trial runs
    more = tiny_params(tmp_path, n_trials=3, temperature_range=[0.05, 0.5])
    again = search.run_search(more.for_search(), more.tracked(), layout)
    assert again["study_name"] == summary["study_name"]
    assert again["trials_run_here"] == 1 and again["trials_complete"] == 3

    # one nested run per trial, under the pipeline run of the params that ran it
    client = mlflow.MlflowClient()
    parent_id = json.loads((layout.reports / "tracking" / "pipeline_run.json").read_text())["run_id"]
    experiment = client.get_run(parent_id).info.experiment_id
    trials = client.search_runs([experiment], f"tags.`optuna.study` = '{summary['study_name']}'")
    assert len(trials) == 3
    assert all("leakage" in r.data.metrics and "w_lc" in r.data.params for r in trials)
    assert all(r.data.tags["mlflow.parentRunId"] for r in trials)
    latest = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert [r.data.tags["optuna.trial"] for r in latest] == ["2"]

    # the stage's choice is what train uses
    from latentanon import stages

    assert stages.chosen_weights(more).latent_consistency == pytest.approx(
        json.loads((out / "chosen.json").read_text())["weights"]["latent_consistency"]
    )


@pytest.mark.slow
def test_run_search_with_worker_processes_is_reproducible(tmp_path):
    sets = make_feature_sets()
    tables = []
    for run in ("a", "b"):
        workdir = tmp_path / run
        write_store(workdir / "features", sets)
        params = tiny_params(workdir, n_trials=4, workers=2)
        summary = search.run_search(params.for_search(), params.tracked(), Layout.from_params(params))
        assert summary["trials_complete"] == 4 and summary["trials_run_here"] == 4
        tables.append(pd.read_csv(workdir / "reports" / "tune" / "trials.csv"))
    assert set(tables[0]["state"]) == {"COMPLETE"}
    pd.testing.assert_frame_equal(tables[0], tables[1])


def _toy_objective(trial):
    """A cheap deterministic two-objective function of the suggested parameters."""
    a = trial.suggest_float("a", 0.1, 10.0, log=True)
    b = trial.suggest_float("b", 0.001, 0.03, log=True)
    return (a - 2.0) ** 2 + 100 * b, abs(np.log(a)) + b


def _history(study) -> list:
    return [(search.study_lib.slot_of(t), t.params, t.values) for t in search.completed(study)]


def _abandon_running_trial(study) -> dict:
    """What a SIGKILL mid-trial leaves: a RUNNING trial whose parameters were drawn."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "heartbeat is meant for Study.optimize"
        trial = study.ask()
    trial.set_user_attr(search.study_lib.SLOT_ATTR, len(search.completed(study)))
    _toy_objective(trial)
    return dict(trial.params)


def test_killed_and_failed_trials_are_retried_and_the_resumed_study_matches_an_uninterrupted_one(tmp_path):
    params = tiny_params(tmp_path, n_trials=8, seed=3)  # 2 random start-up trials, then TPE on the history
    reference = search.open_study(params.for_search(), f"sqlite:///{tmp_path / 'a.db'}", "det")
    search.optimize(reference, _toy_objective, n_trials=8)
    expected = _history(reference)
    assert len({json.dumps(p, sort_keys=True) for _, p, _ in expected}) == 8  # really different proposals

    url = f"sqlite:///{tmp_path / 'b.db'}"
    study = search.open_study(params.for_search(), url, "det")
    search.optimize(study, _toy_objective, n_trials=3)
    killed_params = _abandon_running_trial(study)  # killed in slot 3
    calls = []

    def fails_once(trial):
        calls.append(trial.number)
        values = _toy_objective(trial)
        if len(calls) == 2:
            raise Interrupted("a trial that raised")  # failed in slot 4, parameters drawn
        return values

    study = search.open_study(params.for_search(), url, "det")  # restart: the RUNNING trial is failed now
    with pytest.raises(Interrupted):
        search.optimize(study, fails_once, n_trials=8)
    study = search.open_study(params.for_search(), url, "det")
    search.optimize(study, _toy_objective, n_trials=8)

    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.FAIL) == 2 and optuna.trial.TrialState.RUNNING not in states
    assert _history(study) == expected
    failed = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.FAIL]
    retried = {slot: p for slot, p, _ in _history(study)}
    assert killed_params == retried[3] == failed[0].params
    assert failed[1].params == retried[4]
    # the selection works on slots, so the chosen point is the same trial as well
    pick = lambda s: choose_operating_point(search.trial_points(s), 0.5)[0]
    assert (pick(study).number, pick(study).params) == (pick(reference).number, pick(reference).params)


def _batched(study, n_trials: int, fail_in_batch: int | None = None) -> int:
    """optimize_in_batches with the toy objective, in batches of 3; optionally failing one batch."""
    batches = []

    def measure(proposals):
        batches.append(len(proposals))
        if len(batches) == fail_in_batch:
            raise Interrupted("a batch that raised")
        return proposals

    return search.study_lib.optimize_in_batches(
        study, _toy_objective, measure, lambda trial, values: values, n_trials, batch=3
    )


def test_batched_trials_are_deterministic_and_a_failed_batch_is_proposed_again(tmp_path):
    params = tiny_params(tmp_path, n_trials=8, seed=3)
    reference = search.open_study(params.for_search(), f"sqlite:///{tmp_path / 'a.db'}", "batched")
    assert _batched(reference, 8) == 8
    expected = _history(reference)
    assert [slot for slot, _, _ in expected] == list(range(8))
    assert len({json.dumps(p, sort_keys=True) for _, p, _ in expected}) == 8  # a batch's trials differ
    # slots draw from the same seeds as one trial at a time; the 2 random start-up draws agree, the
    # third differs (in its batch it saw no completed trial, one at a time it saw two)
    sequential = search.open_study(params.for_search(), f"sqlite:///{tmp_path / 'c.db'}", "batched")
    search.optimize(sequential, _toy_objective, n_trials=8)
    seq = _history(sequential)
    assert [p for _, p, _ in seq[:2]] == [p for _, p, _ in expected[:2]] and seq[2][1] != expected[2][1]

    url = f"sqlite:///{tmp_path / 'b.db'}"
    study = search.open_study(params.for_search(), url, "batched")
    with pytest.raises(Interrupted):
        _batched(study, 8, fail_in_batch=2)
    study = search.open_study(params.for_search(), url, "batched")
    _batched(study, 8)
    assert _history(study) == expected
    failed = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.FAIL]
    assert [t.params for t in failed] == [p for _, p, _ in expected[3:6]]


def test_parallel_workers_draw_different_parameters(tmp_path):
    from latentanon.tuning import study as study_lib

    assert study_lib.is_sequential("sqlite:///x.db") and not study_lib.is_sequential("postgresql://db/optuna")
    # two workers starting in the same slot must not propose the same trial: seeds differ by trial number
    seeds = {study_lib.derived_seed(0, number, parallel=True) for number in range(50)}
    assert len(seeds) == 50
    assert study_lib.derived_seed(0, 3) == study_lib.derived_seed(0, 3) != study_lib.derived_seed(1, 3)


def test_suggest_searches_across_methods_and_their_knobs(tmp_path):
    params = tiny_params(tmp_path, methods=["paper", "noise", "leace"], noise_scale_range=[0.1, 1.0])
    noise = optuna.trial.FixedTrial({"method": "noise", "noise_scale": 0.25})
    _, train_cfg = suggest(noise, params.for_search())
    assert train_cfg.method == "noise@0.25"
    leace = optuna.trial.FixedTrial({"method": "leace"})
    assert suggest(leace, params.for_search())[1].method == "leace"
    paper = optuna.trial.FixedTrial({"method": "paper", "w_lc": 10.0, "w_t": 1.0, "w_b": 2.0, "lr": 0.005})
    weights, train_cfg = suggest(paper, params.for_search())
    assert (train_cfg.method, train_cfg.weights.privacy, train_cfg.lr) == ("paper", 2.0, 0.005)
    point = TrialPoint(0, 0.5, 0.9, {}, {"method": "noise", "noise_scale": 0.25})
    assert operating_point.chosen_method(point, params.for_search()) == "noise@0.25"
    assert operating_point.chosen_weights(point, params.for_search()) == asdict(params.train.weights)


def test_a_trial_fits_any_method_through_the_interface(tmp_path):
    sets = make_feature_sets(dim=16, per_split={"train": 8, "val": 4, "test": 4})
    data = SearchData(
        {k: _search_rows(v) for k, v in sets.items() if k != "privacy_videos"},
        [_search_rows(sets["privacy_videos"])],
        "fp",
    )
    params = tiny_params(tmp_path)
    tasks = ("ar", "ad")
    raw = objectives.measure(data.task_sets, data.privacy, tasks, 0)
    for name in ("noise@0.5", "paper"):
        train_cfg = replace(params.train, method=name)
        result = run_trial(data, params.for_search(), params.train.weights, train_cfg, tasks, raw)
        assert set(result["drops"]) == set(tasks) and np.isfinite(result["leakage"])


def test_train_uses_the_tuned_method_when_asked(tmp_path):
    from latentanon import stages

    params = params_from_dict({"paths": {"workdir": str(tmp_path)}, "train": {"method": "tuned"}})
    assert stages.chosen_train_config(params).method == "paper"  # nothing tuned yet
    out = Layout.from_params(params).report_dir("tune")
    out.mkdir(parents=True)
    (out / "chosen.json").write_text(
        json.dumps(
            {
                "method": "noise@0.3",
                "weights": {"latent_consistency": 5.0, "utility": 1.0, "privacy": 1.0, "temperature": 0.1},
            }
        )
    )
    chosen = stages.chosen_train_config(params)
    assert chosen.method == "noise@0.3" and chosen.weights.latent_consistency == 5.0
    # knobs searched for another method never leak into the configured one
    fixed = params_from_dict({"paths": {"workdir": str(tmp_path)}, "train": {"method": "paper"}})
    assert stages.chosen_train_config(fixed).weights == fixed.train.weights
