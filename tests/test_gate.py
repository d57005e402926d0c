"""The promotion gate: rules on hand-made metrics, and decisions against a real (sqlite) registry."""

from __future__ import annotations

import copy
import json

import mlflow
import pytest
import torch

from latentanon.config import Layout, params_from_dict
from latentanon.errors import ModelError
from latentanon.methods.aam import AAM, save_adapter
from latentanon.methods.config import AdapterConfig
from latentanon.tracking import gate, gate_checks
from latentanon.tracking.registry import APPROVED, REJECTED, TAG_DECISION
from test_results_table import earlier_release

GOOD = {
    "privacy": {
        "trained": {
            "normalized_leakage": 0.30,
            "normalized_leakage_interval": [0.25, 0.36],
            "relative_cmap_drop": 0.35,
            "moving": {"normalized_leakage": 0.35, "normalized_leakage_interval": [0.31, 0.39]},
            "scopes": {
                "static": {"normalized_leakage": 0.30, "normalized_leakage_interval": [0.25, 0.36]},
                "moving": {"normalized_leakage": 0.35, "normalized_leakage_interval": [0.31, 0.39]},
                "moving_video_mean": {"normalized_leakage": 0.2, "normalized_leakage_interval": [0.1, 0.3]},
                "untrimmed_video_mean": {"skipped": "no private labels"},
                "rerelease64": {"normalized_leakage": 0.36, "normalized_leakage_interval": [0.33, 0.38]},
            },
        }
    },
    "utility": {
        t: {"trained_relative_drop": 0.004, "trained_relative_drop_interval": [-0.002, 0.009], "seen_in_training": True}
        for t in ("ar", "tad", "ad")
    },
    "bias": {"raw": {"gap": 0.20}, "trained": {"gap": 0.12}},
}


def params_for(workdir, **gate_cfg):
    return params_from_dict({"paths": {"workdir": str(workdir)}, "gate": gate_cfg})


def with_value(tree: dict, dotted: str, value) -> dict:
    tree = copy.deepcopy(tree)
    node = tree
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return tree


def failed(checks) -> set[str]:
    return {c.name for c in checks if not c.passed}


def test_good_metrics_pass_every_check(tmp_path):
    checks = gate_checks.evaluate_checks(GOOD, params_for(tmp_path).gate, champion=None)
    assert failed(checks) == set()
    assert {c.name for c in checks} == {
        "normalized_leakage",
        "relative_cmap_drop",
        "moving_normalized_leakage",
        "worst_scope_normalized_leakage",
        "utility_drop_ar",
        "utility_drop_tad",
        "utility_drop_ad",
        "bias_gap",
    }


@pytest.mark.parametrize(
    "dotted, value, check",
    [
        ("privacy.trained.normalized_leakage_interval", [0.41, 0.5], "normalized_leakage"),
        ("privacy.trained.relative_cmap_drop", 0.19, "relative_cmap_drop"),
        (
            "privacy.trained.moving.normalized_leakage_interval",
            [0.41, 0.6],
            "moving_normalized_leakage",
        ),  # shared clips leak
        (
            "privacy.trained.scopes.moving_video_mean.normalized_leakage_interval",
            [0.3, 0.45],  # one scope straddles
            "worst_scope_normalized_leakage",
        ),
        (
            "privacy.trained.scopes.rerelease64.normalized_leakage_interval",
            [0.42, 0.5],
            "worst_scope_normalized_leakage",
        ),
        ("privacy.trained.scopes.rerelease64.normalized_leakage_interval", KeyError, "worst_scope_normalized_leakage"),
        ("privacy.trained.scopes", KeyError, "worst_scope_normalized_leakage"),  # scopes unmeasured: undecidable
        ("privacy.trained.moving", KeyError, "moving_normalized_leakage"),
        ("privacy.trained.normalized_leakage_interval", KeyError, "normalized_leakage"),  # no interval: undecidable
        ("privacy.trained.normalized_leakage_interval", [0.3, float("nan")], "normalized_leakage"),
        ("utility.tad.trained_relative_drop", 0.011, "utility_drop_tad"),
        ("utility.ad.trained_relative_drop", KeyError, "utility_drop_ad"),  # missing task figure
        ("utility.ar.trained_relative_drop", float("nan"), "utility_drop_ar"),  # not a finite number
        ("privacy.trained.normalized_leakage_interval", ["0.1", 0.2], "normalized_leakage"),  # not numbers
        ("bias.trained.gap", -0.25, "bias_gap"),  # |gap| larger than raw
        ("bias.raw.gap", KeyError, "bias_gap"),
    ],
)
def test_each_rule_can_reject(tmp_path, dotted, value, check):
    checks = gate_checks.evaluate_checks(with_value(GOOD, dotted, value), params_for(tmp_path).gate, champion=None)
    assert failed(checks) == {check}


def test_undecided_privacy_fails_and_undecided_utility_is_reported(tmp_path):
    # leakage mean 0.30 is below 0.4, but its interval straddles the threshold: undecided, so it fails
    straddling = with_value(GOOD, "privacy.trained.normalized_leakage_interval", [0.2, 0.45])
    checks = {c.name: c for c in gate_checks.evaluate_checks(straddling, params_for(tmp_path).gate, champion=None)}
    assert not checks["normalized_leakage"].passed and checks["normalized_leakage"].decided is False
    assert "undecided" in checks["normalized_leakage"].detail
    assert checks["moving_normalized_leakage"].passed and checks["moving_normalized_leakage"].decided
    # a utility drop whose interval straddles 1% passes on its mean and says it is undecided
    wide = with_value(GOOD, "utility.ar.trained_relative_drop_interval", [-0.01, 0.02])
    checks = {c.name: c for c in gate_checks.evaluate_checks(wide, params_for(tmp_path).gate, champion=None)}
    assert checks["utility_drop_ar"].passed and checks["utility_drop_ar"].decided is False
    assert "test videos would decide" not in checks["utility_drop_ar"].detail
    # with the report's estimate of the test size that would decide it, the detail says so
    wide = with_value(wide, "decisions", {"utility_drop_ar": {"test_items_to_decide": 2400}})
    checks = {c.name: c for c in gate_checks.evaluate_checks(wide, params_for(tmp_path).gate, champion=None)}
    assert "(about 2,400 test videos would decide it)" in checks["utility_drop_ar"].detail
    # a drop on the threshold needs more than a hundred times the test set: the detail says why
    wide = with_value(wide, "decisions", {"utility_drop_ar": {"test_items_to_decide": 893828, "test_items": 4608}})
    checks = {c.name: c for c in gate_checks.evaluate_checks(wide, params_for(tmp_path).gate, champion=None)}
    assert "(it sits on the threshold: about 893,828 test videos would decide it)" in checks["utility_drop_ar"].detail
    wide = with_value(wide, "decisions", {"utility_drop_ar": {"test_items_to_decide": None, "test_items": 4608}})
    checks = {c.name: c for c in gate_checks.evaluate_checks(wide, params_for(tmp_path).gate, champion=None)}
    assert "centred on the threshold" in checks["utility_drop_ar"].detail
    # a task the trained method did not see is scored as unseen, not gated as seen
    unseen = with_value(GOOD, "utility.tad.seen_in_training", False)
    unseen = with_value(unseen, "utility.tad.trained_relative_drop", 0.5)
    names = {c.name for c in gate_checks.evaluate_checks(unseen, params_for(tmp_path).gate, champion=None)}
    assert "utility_drop_tad" not in names


def test_thresholds_come_from_params_and_bias_rule_can_be_off(tmp_path):
    strict = params_for(tmp_path, max_normalized_leakage=0.25, require_bias_gap_not_larger=False)
    checks = gate_checks.evaluate_checks(with_value(GOOD, "bias.trained.gap", 0.9), strict.gate, champion=None)
    # the static scope is over 0.25 in the scopes too, so the worst scope fails with it
    assert failed(checks) == {"normalized_leakage", "worst_scope_normalized_leakage"}
    assert "bias_gap" not in {c.name for c in checks}


def test_only_one_scope_over_the_threshold_fails_the_gate_and_is_named(tmp_path):
    leaky = with_value(GOOD, "privacy.trained.scopes.moving_video_mean.normalized_leakage_interval", [0.41, 0.6])
    checks = {c.name: c for c in gate_checks.evaluate_checks(leaky, params_for(tmp_path).gate, champion=None)}
    worst = checks["worst_scope_normalized_leakage"]
    assert not worst.passed and worst.decided and worst.interval == (0.41, 0.6)
    assert "worst scope moving_video_mean" in worst.detail
    assert all(c.passed for name, c in checks.items() if name != "worst_scope_normalized_leakage")
    skipped_only = with_value(GOOD, "privacy.trained.scopes", {"rerelease64": {"skipped": "no labels"}})
    assert failed(gate_checks.evaluate_checks(skipped_only, params_for(tmp_path).gate, champion=None)) == {
        "worst_scope_normalized_leakage"
    }


def test_champion_comparison(tmp_path):
    params = params_for(tmp_path)
    assert failed(gate_checks.evaluate_checks(GOOD, params.gate, {"version": "1", "normalized_leakage": 0.30})) == set()
    assert failed(gate_checks.evaluate_checks(GOOD, params.gate, {"version": "1", "normalized_leakage": 0.29})) == {
        "leakage_vs_champion"
    }
    # a champion without a recorded figure cannot be beaten knowingly: fail closed
    assert failed(gate_checks.evaluate_checks(GOOD, params.gate, {"version": "1", "normalized_leakage": None})) == {
        "leakage_vs_champion"
    }
    tolerant = params_for(tmp_path, champion_leakage_tolerance=0.02)
    assert (
        failed(gate_checks.evaluate_checks(GOOD, tolerant.gate, {"version": "1", "normalized_leakage": 0.29})) == set()
    )


def test_missing_or_broken_metrics_reject_everything(tmp_path):
    tree, problem = gate_checks.read_metrics(tmp_path / "metrics.json")
    assert tree is None and "missing" in problem
    (tmp_path / "metrics.json").write_text("{not json")
    tree, problem = gate_checks.read_metrics(tmp_path / "metrics.json")
    assert tree is None and "not valid JSON" in problem
    (tmp_path / "metrics.json").write_text("[1, 2]")
    assert gate_checks.read_metrics(tmp_path / "metrics.json")[0] is None
    checks = gate_checks.evaluate_checks(None, params_for(tmp_path).gate, champion=None)
    assert checks and not any(c.passed for c in checks)
    # figures given with their interval are read from "mean"
    assert gate_checks.figure({"a": {"b": {"mean": 0.5, "ci": [0.4, 0.6]}}}, "a.b") == 0.5


def test_an_earlier_releases_metrics_are_read_like_the_current_ones(tmp_path):
    old = earlier_release(GOOD)
    assert "aam" in old["privacy"] and "aam_relative_drop" in old["utility"]["ar"] and "aam" in old["bias"]
    cfg = params_for(tmp_path).gate
    current = [(c.name, c.value, c.passed, c.interval) for c in gate_checks.evaluate_checks(GOOD, cfg, champion=None)]
    assert [
        (c.name, c.value, c.passed, c.interval) for c in gate_checks.evaluate_checks(old, cfg, champion=None)
    ] == current
    # every rule still reads the old figures: each can reject them
    leaky = earlier_release(
        with_value(GOOD, "privacy.trained.scopes.rerelease64.normalized_leakage_interval", [0.42, 0.5])
    )
    assert failed(gate_checks.evaluate_checks(leaky, cfg, champion=None)) == {"worst_scope_normalized_leakage"}
    drop = earlier_release(with_value(GOOD, "utility.tad.trained_relative_drop", 0.011))
    assert failed(gate_checks.evaluate_checks(drop, cfg, champion=None)) == {"utility_drop_tad"}
    gap = earlier_release(with_value(GOOD, "bias.trained.gap", -0.25))
    assert failed(gate_checks.evaluate_checks(gap, cfg, champion=None)) == {"bias_gap"}
    assert failed(gate_checks.evaluate_checks(old, cfg, {"version": "1", "normalized_leakage": 0.29})) == {
        "leakage_vs_champion"
    }
    # read from a file: the tree comes back with the current keys, and a current key wins over an old one
    (tmp_path / "metrics.json").write_text(json.dumps({**old, "privacy": {**old["privacy"], **GOOD["privacy"]}}))
    tree, problem = gate_checks.read_metrics(tmp_path / "metrics.json")
    assert not problem and "aam" not in tree["privacy"] and "aam" not in tree["bias"]
    assert tree["privacy"]["trained"] == GOOD["privacy"]["trained"] and tree["utility"] == GOOD["utility"]
    both = with_value(GOOD, "privacy.aam", {**GOOD["privacy"]["trained"], "relative_cmap_drop": 0.0})
    assert failed(gate_checks.evaluate_checks(both, cfg, champion=None)) == set()
    # a gate section from an earlier params file names the old bias key: read as the current one
    with pytest.warns(DeprecationWarning):
        legacy_cfg = params_from_dict({"gate": {"bias_aam_gap_key": "bias.aam.gap"}}).gate
    checks = {
        c.name: c for c in gate_checks.evaluate_checks(with_value(GOOD, "bias.trained.gap", 0.15), legacy_cfg, None)
    }
    assert checks["bias_gap"].value == 0.15 and checks["bias_gap"].passed


# ----------------------------------------------------------------------------- against a registry


def save_random_adapter(directory, seed: int, dim: int = 16) -> AAM:
    torch.manual_seed(seed)
    model = AAM(dim, AdapterConfig(blocks=1, heads=2))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    save_adapter(model, directory)
    return model


TEST_ENCODER = "builtin-test-encoder@0"


def write_metrics(layout: Layout, tree: dict | None, method_id: str | None = None) -> None:
    """metrics.json as evaluate writes it: the figures name the method they measured (by default
    the adapter in ``layout.method_dir``), and the train summary names the encoder."""
    from latentanon.methods.registry import load_method

    layout.reports.mkdir(parents=True, exist_ok=True)
    path = layout.reports / "metrics.json"
    if tree is None:
        path.unlink(missing_ok=True)
    else:
        if method_id is None and layout.method_dir.is_dir() and any(layout.method_dir.iterdir()):
            method_id = load_method(layout.method_dir).fingerprint()
        path.write_text(json.dumps({**tree, "trained_method": {"name": "paper", "id": method_id}}))
    summary = layout.report_dir("train") / "summary.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"anonymized": {"encoder": TEST_ENCODER}}))


def aliases(client, name: str) -> dict:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


@pytest.mark.slow
def test_gate_flow_promotes_rejects_and_keeps_champion(tmp_path):
    params = params_for(tmp_path)
    layout = Layout.from_params(params)
    client = mlflow.MlflowClient()
    name = params.tracking.model_name

    # 1. upstream failure: no metrics -> rejected; the registered version keeps @candidate only
    save_random_adapter(layout.method_dir, seed=1)
    write_metrics(layout, None)
    summary = gate.run_gate(params.tracked(), layout)
    assert summary["decision"] == REJECTED and not summary["promoted"]
    assert any("metrics file missing" in r for r in summary["reasons"])
    assert client.get_model_version(name, "1").tags[TAG_DECISION] == REJECTED
    assert aliases(client, name) == {"candidate": "1"}
    decision = json.loads((layout.report_dir("gate") / "decision.json").read_text())
    assert decision["decision"] == REJECTED and decision["thresholds"]["max_normalized_leakage"] == 0.4

    # 2. a passing candidate becomes champion; figures and thresholds are version tags
    save_random_adapter(layout.method_dir, seed=2)
    write_metrics(layout, GOOD)
    summary = gate.run_gate(params.tracked(), layout)
    assert (summary["decision"], summary["version"], summary["promoted"]) == (APPROVED, "2", True)
    assert aliases(client, name) == {"champion": "2"}
    tags = client.get_model_version(name, "2").tags
    assert tags["gate.normalized_leakage"] == "0.3" and tags["gate.threshold.max_normalized_leakage"] == "0.4"
    assert tags["gate.moving_normalized_leakage.decided"] == "true"
    decision = json.loads((layout.report_dir("gate") / "decision.json").read_text())
    assert decision["decided"] == {
        "normalized_leakage": True,
        "moving_normalized_leakage": True,
        "worst_scope_normalized_leakage": True,
        "utility_drop_ar": True,
        "utility_drop_tad": True,
        "utility_drop_ad": True,
    }

    # 3. one threshold failed (AR utility) -> rejected, stays @candidate, champion unchanged
    save_random_adapter(layout.method_dir, seed=3)
    write_metrics(layout, with_value(GOOD, "utility.ar.trained_relative_drop", 0.05))
    summary = gate.run_gate(params.tracked(), layout)
    assert summary["decision"] == REJECTED and summary["version"] == "3"
    assert aliases(client, name) == {"champion": "2", "candidate": "3"}

    # 4. within every threshold but leakier than the champion -> rejected, champion unchanged
    save_random_adapter(layout.method_dir, seed=4)
    write_metrics(layout, with_value(GOOD, "privacy.trained.normalized_leakage", 0.35))
    summary = gate.run_gate(params.tracked(), layout)
    assert summary["decision"] == REJECTED
    assert [r for r in summary["reasons"] if r.startswith("leakage_vs_champion")]
    assert aliases(client, name) == {"champion": "2", "candidate": "4"}

    # 5. a rejected version cannot be promoted by hand
    with pytest.raises(ModelError, match="refusing to promote"):
        gate.promote(params.tracking, "4", layout)

    # 6. a re-run on the same adapter reuses its version instead of registering a new one
    summary = gate.run_gate(params.tracked(), layout)
    assert summary["version"] == "4" and summary["registered"]["reused"]

    # 7. no trained adapter: rejected without judging the stale candidate
    for f in layout.method_dir.iterdir():
        f.unlink()
    write_metrics(layout, GOOD)
    summary = gate.run_gate(params.tracked(), layout)
    assert summary["decision"] == REJECTED and summary["version"] is None
    assert aliases(client, name) == {"champion": "2", "candidate": "4"}
    assert client.get_model_version(name, "4").tags[TAG_DECISION] == REJECTED

    # 8. the champion's own adapter re-judged on worse metrics: rejected and demoted, so
    #    @champion never names a version the gate did not approve
    save_random_adapter(layout.method_dir, seed=2)
    write_metrics(layout, with_value(GOOD, "utility.ad.trained_relative_drop", 0.5))
    summary = gate.run_gate(params.tracked(), layout)
    assert (summary["decision"], summary["version"]) == (REJECTED, "2") and summary["registered"]["reused"]
    assert aliases(client, name) == {"candidate": "2"}


def test_a_champion_approved_on_an_earlier_releases_metrics_bounds_the_next_candidate(tmp_path):
    """The champion's leakage travels as a version tag (``gate.normalized_leakage``) that the
    rename left alone: a version approved on an ``aam``-keyed metrics.json is compared as any other."""
    params = params_for(tmp_path)
    layout = Layout.from_params(params)
    client = mlflow.MlflowClient()
    name = params.tracking.model_name
    save_random_adapter(layout.method_dir, seed=2)
    write_metrics(layout, earlier_release(GOOD))
    summary = gate.run_gate(params.tracked(), layout)
    assert (summary["decision"], summary["promoted"]) == (APPROVED, True), summary["reasons"]
    assert client.get_model_version(name, summary["version"]).tags[gate_checks.TAG_LEAKAGE] == "0.3"
    save_random_adapter(layout.method_dir, seed=4)
    write_metrics(layout, with_value(GOOD, "privacy.trained.normalized_leakage", 0.35))
    summary = gate.run_gate(params.tracked(), layout)
    assert summary["decision"] == REJECTED
    assert [r for r in summary["reasons"] if r.startswith("leakage_vs_champion") and "0.35 <= 0.3" in r]
    assert aliases(client, name) == {"champion": "1", "candidate": "2"}
