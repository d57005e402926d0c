"""The bias protocol on hand-made cases, and the evaluate + audit_bias stages on a tiny real store."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from latentanon.config import Layout, params_from_dict
from latentanon.errors import DataError, LatentanonError
from latentanon.evaluation import bias, pool, run
from latentanon.features.featureset import FeatureSet
from latentanon.features.store import write_feature_set
from latentanon.methods.aam import AAM, save_adapter
from latentanon.methods.apply import anonymize_store
from latentanon.methods.config import AdapterConfig
from test_privacy import ATTRIBUTE_CLASSES, private_feature_set

DIM = 16
N_IDENTITIES = 12
N_ACTIONS = 4
FPS = 16
SNIPPETS = 8


def _split(person: int) -> str:
    return "train" if person < N_IDENTITIES // 2 else "val" if person < 3 * N_IDENTITIES // 4 else "test"


def _people(rng):
    return [
        {a: int(rng.integers(0, k)) for a, k in ATTRIBUTE_CLASSES.items()} | {"gender": p % 2}
        for p in range(N_IDENTITIES)
    ]


def untrimmed_set(rng, directions) -> FeatureSet:
    """One action instance per video at snippets [2, 5): snippet features carry the action there."""
    rows, snippets, static = [], [], []
    for person in range(N_IDENTITIES):
        for v in range(2):
            action = (person + v) % N_ACTIONS
            seq = 0.3 * rng.standard_normal((SNIPPETS, DIM))
            seq[2:5] += directions[action]
            rows.append(
                {
                    "video_id": f"u{person}-{v}",
                    "split": _split(person),
                    "identity": f"id{person}",
                    "label": "",
                    "label_id": -1,
                    "frames": SNIPPETS * FPS,
                    "fps": FPS,
                    "segments": json.dumps([[2.0, 5.0, f"action{action}"]]),
                }
            )
            snippets.append(seq.astype(np.float32))
            static.append(rng.standard_normal((1, DIM)).astype(np.float32))
    return FeatureSet("untrimmed", pd.DataFrame(rows), {"snippets": snippets, "static": static})


def anomaly_set(rng, direction) -> FeatureSet:
    """Half the videos have an anomaly in snippets [3, 6)."""
    rows, snippets, static = [], [], []
    for person in range(N_IDENTITIES):
        for v in range(2):
            anomalous = v == 1
            seq = 0.3 * rng.standard_normal((SNIPPETS, DIM))
            if anomalous:
                seq[3:6] += direction
            rows.append(
                {
                    "video_id": f"a{person}-{v}",
                    "split": _split(person),
                    "identity": f"id{person}",
                    "label": "",
                    "label_id": -1,
                    "frames": SNIPPETS * FPS,
                    "fps": FPS,
                    "anomaly": int(anomalous),
                    "segments": json.dumps([[3.0, 6.0, "anomaly"]] if anomalous else []),
                }
            )
            snippets.append(seq.astype(np.float32))
            static.append(rng.standard_normal((1, DIM)).astype(np.float32))
    return FeatureSet("anomaly", pd.DataFrame(rows), {"snippets": snippets, "static": static})


def bias_set(rng, directions, gender_direction) -> FeatureSet:
    """Every subject performs every action; clips = action + gender + noise."""
    rows, clips, static = [], [], []
    for person in range(3 * N_IDENTITIES):
        split = "train" if person < 2 * N_IDENTITIES else "val" if person < 5 * N_IDENTITIES // 2 else "test"
        gender = person % 2
        for action in range(N_ACTIONS):
            rows.append(
                {
                    "video_id": f"b{person}-{action}",
                    "split": split,
                    "identity": f"s{person}",
                    "subject": person,
                    "gender": gender,
                    "label": f"action{action}",
                    "label_id": action,
                }
            )
            base = directions[action] + (gender - 0.5) * gender_direction
            clips.append((base + 0.8 * rng.standard_normal((2, DIM))).astype(np.float32))
            static.append((base + 0.8 * rng.standard_normal((2, DIM))).astype(np.float32))
    return FeatureSet("bias", pd.DataFrame(rows), {"clips": clips, "static": static})


def build_store(root) -> None:
    rng = np.random.default_rng(0)
    directions = 1.5 * rng.standard_normal((N_ACTIONS, DIM))
    sets = [
        private_feature_set("privacy_videos", n_identities=N_IDENTITIES, videos_per_identity=2, dim=DIM),
        private_feature_set(
            "privacy_images", n_identities=N_IDENTITIES, videos_per_identity=2, dim=DIM, kinds=("static",), seed=1
        ),
        private_feature_set("actions", n_identities=N_IDENTITIES, videos_per_identity=3, dim=DIM, seed=2),
        untrimmed_set(rng, directions),
        anomaly_set(rng, 2.0 * rng.standard_normal(DIM)),
        bias_set(rng, directions, 2.0 * rng.standard_normal(DIM)),
    ]
    for fs in sets:
        write_feature_set(str(root / "features"), fs, videos_per_shard=64)
    torch.manual_seed(0)
    adapter = AAM(DIM, AdapterConfig(blocks=1, heads=2))
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_adapter(adapter, root / "models" / "method")
    anonymize_store(root / "models" / "method", str(root / "features"), str(root / "features_anon"))


def tiny_params(root):
    return params_from_dict(
        {
            "paths": {"workdir": str(root)},
            "train": {
                "adapter": {"blocks": 1, "heads": 2},
                "tasks": {"tad": 0.0},
                "epochs": 2,
                "batch_size": 64,
                "adversarial": {"steps": 10},
            },
            "evaluate": {
                "seeds": [0, 1],
                "noise_scales": [1.0],
                "workers": 2,
                "bootstrap": 200,
                "unseen_seeds": [0],
                "methods": ["identity", "leace", "adversarial", "noise"],
            },
            "audit_bias": {"seeds": [0, 1]},
        }
    )


@pytest.fixture(scope="module")
def stages_done(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_stages")
    build_store(root)
    params = tiny_params(root)
    layout = Layout.from_params(params)
    evaluated = run.evaluate(params.evaluate, params.train, layout)
    audited = bias.audit_bias(params.audit_bias, params.gate, layout)
    return root, params, layout, evaluated, audited


# ---------------------------------------------------------------------------- protocol pieces


def _protocol_set(n_per_gender: int = 20) -> FeatureSet:
    rows = [
        {"video_id": f"v{a}-{g}-{i}", "split": "train", "label_id": a, "label": f"action{a}", "gender": g}
        for a in range(3)
        for g in (0, 1)
        for i in range(n_per_gender)
    ]
    return FeatureSet("bias", pd.DataFrame(rows), {"clips": [np.zeros((1, 2), np.float32)] * len(rows)})


def test_skewed_subset_flips_the_shortcut_action():
    fs = _protocol_set(20)
    out = bias.skewed_subset(fs, majority=1, shortcut=2, skew=0.95, rng=np.random.default_rng(0))
    counts = out.records.groupby(["label_id", "gender"]).size()
    # 20 majority kept, round(20 * 0.05 / 0.95) = 1 minority.
    assert counts[(0, 1)] == 20 and counts[(0, 0)] == 1
    assert counts[(1, 1)] == 20 and counts[(1, 0)] == 1
    assert counts[(2, 0)] == 20 and counts[(2, 1)] == 1
    with pytest.raises(ValueError, match="skew"):
        bias.skewed_subset(fs, 1, 2, 1.0, np.random.default_rng(0))


def test_balanced_subset_equal_genders_per_action():
    fs = _protocol_set(5)
    lopsided = fs.subset(
        ~(
            (fs.records["label_id"] == 0)
            & (fs.records["gender"] == 0)
            & (fs.records["video_id"].str.endswith(("-3", "-4")))
        ).to_numpy()
    )
    out = bias.balanced_subset(lopsided, np.random.default_rng(0))
    counts = out.records.groupby(["label_id", "gender"]).size()
    assert counts[(0, 0)] == counts[(0, 1)] == 3
    assert counts[(1, 0)] == counts[(1, 1)] == 5


def test_fairness_known_gap():
    y_true = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    y_pred = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    gender = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    out = bias.fairness(y_true, y_pred, gender)
    assert out["by_gender"] == {"masculine": 1.0, "feminine": 0.5}
    assert out["overall"] == pytest.approx(0.75)
    assert out["gap"] == pytest.approx(0.5)


def test_shortcut_label_by_name_and_missing():
    fs = _protocol_set(2)
    assert bias.shortcut_label(fs, "") == 0
    assert bias.shortcut_label(fs, "action2") == 2
    with pytest.raises(DataError, match="nosuch"):
        bias.shortcut_label(fs, "nosuch")


def test_audit_needs_evaluation_first(tmp_path):
    params = tiny_params(tmp_path)
    with pytest.raises(LatentanonError, match="evaluation.json"):
        bias.audit_bias(params.audit_bias, params.gate, Layout.from_params(params))


# ---------------------------------------------------------------------------- stages end to end


@pytest.mark.slow
def test_evaluate_writes_every_method_and_figure(stages_done):
    root, params, layout, evaluated, _ = stages_done
    evaluation = json.loads((root / "reports" / "evaluate" / "evaluation.json").read_text())
    assert evaluation["methods"] == ["raw", "trained", "leace", "adversarial", "noise@1"]
    assert evaluation["tasks"]["tad"]["seen_in_training"] is False
    assert evaluation["tasks"]["ar"]["seen_in_training"] is True
    raw = evaluation["privacy"]["raw"]["static"]
    assert raw["normalized_leakage"]["mean"] == pytest.approx(1.0)
    assert raw["cmap"]["mean"] > raw["chance"]["mean"]
    assert raw["cmap"]["n"] == 2 and np.isfinite(raw["cmap"]["low"])
    assert evaluation["privacy"]["leace"]["static"]["cmap"]["values"] != raw["cmap"]["values"]
    assert evaluation["privacy"]["trained"]["static"]["chance"]["values"] == raw["chance"]["values"]
    for task in ("ar", "tad", "ad"):
        assert evaluation["utility"][task]["raw"]["relative_drop"]["mean"] == 0.0
        assert "trained" in evaluation["utility"][task]
    for plot in ("attribute_leakage.png", "privacy_utility.png"):
        assert (root / "reports" / "evaluate" / plot).stat().st_size > 1000
    assert (
        evaluated["trained_normalized_leakage"]
        == evaluation["privacy"]["trained"]["static"]["normalized_leakage"]["mean"]
    )


@pytest.mark.slow
def test_evaluate_resumes_from_partial_results(stages_done, monkeypatch):
    root, params, layout, evaluated, _ = stages_done

    def no_work(*args, **kwargs):
        raise AssertionError("finished (method, seed) pairs must not be measured again")

    monkeypatch.setattr(run, "measure", no_work)
    again = run.evaluate(params.evaluate, params.train, layout)
    assert again["trained_normalized_leakage"] == evaluated["trained_normalized_leakage"]


@pytest.mark.parametrize("refit", [False, True])
def test_baselines_are_fitted_once_unless_refit_per_seed(tmp_path, monkeypatch, refit):
    from latentanon.methods import registry

    build_store(tmp_path)
    base = tiny_params(tmp_path)
    params = replace(
        base,
        evaluate=replace(
            base.evaluate, methods=("noise",), workers=1, unseen_seeds=(), releases=(), refit_baselines=refit
        ),
    )
    fits, transforms = [], {}
    real_create = registry.create_method

    def counting_create(name, train):
        method = real_create(name, train)
        fit, keyed = method.fit, method.with_reproducible_noise
        method.fit = lambda sets, seed=0, **kw: (fits.append(seed), fit(sets, seed=seed, **kw))[1]

        def with_reproducible_noise(key):
            copy = keyed(key)  # evaluation transforms through this keyed copy: record its draws
            transform = copy.transform
            copy.transform = lambda fs: (
                transforms.setdefault(copy.noise_key, []).append(transform(fs)) or transforms[copy.noise_key][-1]
            )
            return copy

        method.with_reproducible_noise = with_reproducible_noise
        return method

    monkeypatch.setattr(registry, "create_method", counting_create)
    monkeypatch.setattr(pool, "create_method", counting_create)
    run.evaluate(params.evaluate, params.train, Layout.from_params(params))
    assert fits == ([0, 1] if refit else [0])
    # the noise is drawn per evaluation seed either way
    assert set(transforms) == {0, 1}
    first = {key: next(iter(out[0].arrays.values()))[0] for key, out in transforms.items()}
    assert not np.allclose(first[0], first[1])


@pytest.mark.slow
def test_metrics_json_has_the_gate_keys(stages_done):
    root, *_ = stages_done
    tree = json.loads((root / "reports" / "metrics.json").read_text())
    assert set(tree) >= {"privacy", "utility", "bias", "baselines", "seeds", "targets"}
    for key in ("normalized_leakage", "relative_cmap_drop"):
        assert isinstance(tree["privacy"]["trained"][key], float)
    for task in ("ar", "tad", "ad"):
        assert isinstance(tree["utility"][task]["trained_relative_drop"], float)
        assert "raw" in tree["utility"][task] and "leace_relative_drop" in tree["utility"][task]
    assert tree["privacy"]["raw"]["chance"] == tree["privacy"]["trained"]["chance"]
    assert {"mean", "low", "high"} <= set(tree["bias"]["raw"]["gap"]) and "trained" in tree["bias"]
    assert set(tree["bias"]["variants"]) == {"F", "M"}
    assert tree["baselines"]["needs_private_labels"] == {
        "identity": False,
        "leace": True,
        "adversarial": True,
        "noise@1": False,
    }
    assert tree["seeds"] == {"evaluate": [0, 1], "audit_bias": [0, 1]}
    # the method the train stage trained is named; recovery, the paper protocol and paired intervals
    trained = tree["privacy"]["trained"]
    assert trained["method"] == "paper" and isinstance(trained["recovery_r2"], float)
    assert tree["privacy"]["leace"]["recovery_r2"] < 1.0
    assert set(trained["paper_protocol"]) == {"static", "moving"}
    assert trained["interval_kind"] == "paired bootstrap"
    for scope in (trained, trained["moving"]):
        low, high = scope["normalized_leakage_interval"]
        assert low <= high and scope["normalized_leakage_half_width"] == pytest.approx((high - low) / 2)
    for task in ("ar", "tad", "ad"):
        low, high = tree["utility"][task]["trained_relative_drop_interval"]
        assert low <= high
        # the utility interval is the seed ensemble's; the per-seed figures stay beside it
        assert tree["utility"][task]["relative_drop_interval_kind"] == "seed ensemble, bootstrap over test videos"
        assert tree["utility"][task]["trained_relative_drop_half_width"] == pytest.approx((high - low) / 2)
        assert len(tree["utility"][task]["trained_relative_drop_seed_bootstrap_interval"]) == 2
        assert isinstance(tree["utility"][task]["raw"]["ensemble_value"], float)
        unseen = tree["utility"][task]["trained_unseen"]
        assert unseen["trained_on"] == [t for t in ("ar", "ad") if t != task]
        assert len(unseen["relative_drop_interval"]) == 2  # paired against raw's test videos
    # decisions: every gate criterion for a seen task, each saying whether its interval decides it
    assert set(tree["decisions"]) == {
        "normalized_leakage",
        "moving_normalized_leakage",
        "worst_scope_normalized_leakage",
        "utility_drop_ar",
        "utility_drop_ad",
    }
    # every scope a user shares, against raw in the same scope; the worst one named; the floor
    assert set(trained["scopes"]) >= {
        "static",
        "moving",
        "moving_video_mean",
        "untrimmed_video_mean",
        "anomaly_video_mean",
        "rerelease16",
        "rerelease64",
        "rerelease16_video_mean",
        "rerelease64_video_mean",
    }
    assert trained["scopes"]["static"]["normalized_leakage"] == pytest.approx(trained["normalized_leakage"])
    measured = {s: b for s, b in trained["scopes"].items() if "skipped" not in b}
    assert trained["worst_scope"]["scope"] in measured
    assert trained["worst_scope"]["normalized_leakage_interval"][1] == max(
        b["normalized_leakage_interval"][1] for b in measured.values()
    )
    assert "publishes identical features" in tree["privacy"]["leace"]["scopes"]["rerelease16"]["deterministic"]
    assert "deterministic" not in tree["privacy"]["noise@1"]["scopes"]["rerelease16"]
    assert tree["privacy_floor"]["tasks"] == ["ar", "ad"] and tree["privacy_floor"]["seeds"] == [0]
    assert isinstance(tree["privacy_floor"]["above_target"], bool)
    for d in tree["decisions"].values():
        assert isinstance(d["decided"], bool) and (d["passed"] is None) == (not d["decided"])
    report = (root / "reports" / "report.md").read_text()
    assert "Decisions (gate criteria)" in report and "Unseen tasks" in report and "paper protocol" in report.lower()
    assert "### Privacy in every scope" in report and "### The floor" in report


@pytest.mark.slow
def test_bias_audit_sees_the_skew(stages_done):
    root, *_ = stages_done
    audit = json.loads((root / "reports" / "audit_bias" / "bias.json").read_text())
    assert audit["protocol"]["shortcut_action"] == "action0"
    for variant in ("F", "M"):
        for run_ in audit["runs"][variant]["raw"]:
            assert run_["train_majority_share"] > 0.6
            assert set(run_["by_gender"]) == {"masculine", "feminine"}
    assert (root / "reports" / "audit_bias" / "bias.png").stat().st_size > 1000
