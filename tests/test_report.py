"""metrics.json and report.md from hand-made per-seed results with known summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentanon.config import params_from_dict
from latentanon.evaluation import dvc_views, metrics_tree, readme_table, report, report_cells
from latentanon.evaluation.summary import privacy_utility_points, summarize, worst_scope

ATTRS = ("gender", "face")
TASKS = ("ar", "tad", "ad")


def _privacy(cmap: float, chance: float = 0.5) -> dict:
    attributes = {a: {"map": cmap, "chance": chance, "attacker": {"name": "linear"}} for a in ATTRS}
    return {"cmap": cmap, "chance": chance, "attributes": attributes}


def _run(static: float, utility: dict[str, float]) -> dict:
    return {
        "privacy": {
            "static": _privacy(static),
            "moving": _privacy(static),
            "reid": {"top1": static, "chance": 0.1},
            "gait": {"top1": static / 2, "chance": 0.1},
        },
        "utility": {t: {"value": v, "metric": f"{t}-metric"} for t, v in utility.items()},
    }


def _per_seed(methods: dict[str, tuple[list[float], list[dict[str, float]]]]) -> dict:
    return {
        m: {str(s): _run(c, u) for s, (c, u) in enumerate(zip(cmaps, utils))} for m, (cmaps, utils) in methods.items()
    }


def _evaluation(per_seed: dict) -> dict:
    summary = summarize(per_seed, [0, 1], 0.95)
    methods = list(per_seed)
    return {
        "methods": methods,
        "baselines": {
            "identity": {"needs_private_labels": False},
            **{m: {"needs_private_labels": m == "leace"} for m in methods if m not in ("raw", "trained")},
        },
        "seeds": [0, 1],
        "confidence": 0.95,
        "attributes": list(ATTRS),
        "tasks": {t: {"metric": f"{t}-metric", "seen_in_training": t != "ad"} for t in TASKS},
        "privacy": summary["privacy"],
        "utility": summary["utility"],
        "privacy_utility": privacy_utility_points(summary),
        "plots": {"attribute_leakage": "attribute_leakage.png", "privacy_utility": "privacy_utility.png"},
    }


def _bias() -> dict:
    block = {
        "overall": {"mean": 0.8, "low": 0.7, "high": 0.9},
        "gap": {"mean": 0.1, "low": 0.05, "high": 0.15},
        "by_gender": {
            "feminine": {"mean": 0.85, "low": 0.8, "high": 0.9},
            "masculine": {"mean": 0.75, "low": 0.7, "high": 0.8},
        },
    }
    return {
        "sources": ["raw", "trained"],
        "seeds": [0, 1],
        "pooled": {"raw": block, "trained": block},
        "variants": {"F": {"raw": block, "trained": block}, "M": {"raw": block, "trained": block}},
        "protocol": {
            "skew": 0.95,
            "shortcut_action": "wave",
            "shortcut_label_id": 0,
            "variants": {"F": "feminine", "M": "masculine"},
        },
        "plot": "bias.png",
    }


GOOD_UTILITY = {"ar": 0.9, "tad": 0.5, "ad": 0.8}


def test_summaries_give_known_drops_and_leakage():
    per_seed = _per_seed(
        {
            "raw": ([0.9, 0.7], [GOOD_UTILITY, GOOD_UTILITY]),
            "trained": ([0.6, 0.6], [GOOD_UTILITY, {"ar": 0.81, "tad": 0.5, "ad": 0.8}]),
        }
    )
    evaluation = _evaluation(per_seed)
    trained = evaluation["privacy"]["trained"]["static"]
    # seed 0: (0.6-0.5)/(0.9-0.5) = 0.25; seed 1: (0.6-0.5)/(0.7-0.5) = 0.5.
    assert trained["normalized_leakage"]["values"] == pytest.approx([0.25, 0.5])
    # relative drops: (0.9-0.6)/0.9 and (0.7-0.6)/0.7
    assert trained["relative_cmap_drop"]["mean"] == pytest.approx(((0.3 / 0.9) + (0.1 / 0.7)) / 2)
    assert evaluation["utility"]["ar"]["trained"]["relative_drop"]["values"] == pytest.approx([0.0, 0.1])


def test_metrics_tree_targets_and_report(tmp_path):
    per_seed = _per_seed(
        {
            "raw": ([0.9, 0.9], [GOOD_UTILITY] * 2),
            "trained": ([0.6, 0.6], [GOOD_UTILITY] * 2),  # leakage 0.25, no utility drop
            "leace": ([0.55, 0.55], [{"ar": 0.95, "tad": 0.5, "ad": 0.8}] * 2),  # dominates trained
            "noise@1": ([0.8, 0.8], [{"ar": 0.5, "tad": 0.3, "ad": 0.6}] * 2),
        }
    )
    evaluation = _evaluation(per_seed)
    params = params_from_dict({})
    tree = metrics_tree.build_metrics(evaluation, _bias(), params.gate)
    assert tree["privacy"]["trained"]["normalized_leakage"] == pytest.approx(0.25)
    assert tree["privacy"]["trained"]["relative_cmap_drop"] == pytest.approx(1 / 3)
    assert tree["utility"]["ar"]["trained_relative_drop"] == pytest.approx(0.0)
    assert tree["utility"]["ar"]["noise@1_relative_drop"] == pytest.approx(0.4 / 0.9)
    assert tree["utility"]["ad"]["seen_in_training"] is False
    assert tree["targets"]["normalized_leakage"]["passed"] is True
    assert tree["targets"]["utility_within_1pct"]["passed"] is True
    assert tree["targets"]["not_dominated"] == {**tree["targets"]["not_dominated"], "passed": False, "value": ["leace"]}
    assert tree["bias"]["raw"]["gap"]["mean"] == 0.1
    json.dumps(tree)  # plain JSON all the way down

    path = report.write_report(tree, evaluation, _bias(), tmp_path / "report.md")
    text = path.read_text()
    for method in evaluation["methods"]:
        assert f"| {method} |" in text
    assert "FAIL" in text and "PASS" in text
    assert "(needs private labels)" in text and "NTU-Bias-F" in text
    assert "](evaluate/privacy_utility.png)" in text and "](audit_bias/bias.png)" in text


def test_the_head_input_form_kept_on_each_seed_reaches_metrics_and_the_report(tmp_path):
    per_seed = _per_seed({"raw": ([0.9, 0.9], [GOOD_UTILITY] * 2), "trained": ([0.6, 0.6], [GOOD_UTILITY] * 2)})
    for seed, form in (("0", "principal_axes"), ("1", "standardised")):
        per_seed["trained"][seed]["utility"]["tad"]["inputs"] = form
        for task in TASKS:
            per_seed["raw"][seed]["utility"][task]["inputs"] = "principal_axes"
    evaluation = {**_evaluation(per_seed), "head_inputs": ["principal_axes", "standardised"]}
    tree = metrics_tree.build_metrics(evaluation, _bias(), params_from_dict({}).gate)
    assert tree["utility"]["tad"]["trained"]["inputs"] == ["principal_axes", "standardised"]
    assert tree["utility"]["ar"]["raw"]["inputs"] == ["principal_axes"] * 2
    assert tree["utility"]["ar"]["trained"]["inputs"] == ["standardised"] * 2  # results that name none
    text = report.write_report(tree, evaluation, _bias(), tmp_path / "report.md").read_text()
    assert "| trained | std / std | axes / std | std / std |" in text
    assert "| raw | axes / axes | axes / axes | axes / axes |" in text
    assert "heads reading principal_axes or standardised features, whichever a default-hyper-parameter" in text


def test_failing_leakage_and_utility_targets():
    per_seed = _per_seed(
        {
            "raw": ([0.9, 0.9], [GOOD_UTILITY] * 2),
            "trained": ([0.8, 0.8], [{"ar": 0.85, "tad": 0.5, "ad": 0.8}] * 2),
        }
    )
    tree = metrics_tree.build_metrics(_evaluation(per_seed), _bias(), params_from_dict({}).gate)
    assert tree["privacy"]["trained"]["normalized_leakage"] == pytest.approx(0.75)
    assert tree["targets"]["normalized_leakage"]["passed"] is False
    assert tree["targets"]["utility_within_1pct"]["passed"] is False
    assert tree["targets"]["not_dominated"]["passed"] is True


def _items(probabilities: float, correct: list[int]) -> dict:
    """Per-test-item arrays: 20 items, gender label alternating, the attacker's confidence in the
    right class; AR correctness per test video."""
    labels = np.arange(20) % 2
    right = np.full(20, probabilities)
    probs = np.c_[np.where(labels == 0, right, 1 - right), np.where(labels == 1, right, 1 - right)]
    probs[::3] = probs[::3, ::-1]  # some mistakes, so raw is not perfect
    scope = {"labels": {"gender": labels}, "probabilities": {"gender": probs}}
    # AR: 3 classes; a correct video's probabilities peak at its label, a wrong one's at the next class
    ar_labels = np.arange(len(correct)) % 3
    peak = np.where(np.array(correct) == 1, ar_labels, (ar_labels + 1) % 3)
    ar_probs = np.full((len(correct), 3), 0.1)
    ar_probs[np.arange(len(correct)), peak] = 0.8
    ar = {"correct": np.array(correct, float), "probabilities": ar_probs, "labels": ar_labels}
    return {"static": scope, "moving": scope, "utility": {"ar": ar}}


def test_paired_intervals_decisions_and_named_method(tmp_path):
    per_seed = _per_seed(
        {
            "raw": ([0.9, 0.9], [GOOD_UTILITY] * 2),
            "trained": ([0.6, 0.6], [GOOD_UTILITY] * 2),
            "noise@1": ([0.8, 0.8], [GOOD_UTILITY] * 2),
        }
    )
    raw_items = _items(0.9, [1] * 8 + [0] * 2)
    items = {
        "raw": {"0": raw_items, "1": raw_items},
        "trained": {"0": raw_items, "1": raw_items},  # identical to raw
        "noise@1": {"0": _items(0.9, [0] * 10), "1": _items(0.9, [0] * 10)},
    }  # every video wrong
    summary = summarize(per_seed, [0, 1], 0.95, items, n_resamples=200)
    trained = summary["privacy"]["trained"]["static"]["normalized_leakage_paired"]
    assert (trained["low"], trained["high"]) == pytest.approx((1.0, 1.0))
    drop = summary["utility"]["ar"]["trained"]["relative_drop_paired"]
    assert (drop["low"], drop["high"]) == pytest.approx((0.0, 0.0))
    noisy = summary["utility"]["ar"]["noise@1"]["relative_drop_paired"]
    assert noisy["low"] == pytest.approx(1.0)
    ensemble = summary["utility"]["ar"]["trained"]["relative_drop_ensemble"]
    assert (ensemble["point"], ensemble["low"], ensemble["high"]) == (0.0, 0.0, 0.0)
    assert summary["utility"]["ar"]["noise@1"]["relative_drop_ensemble"]["point"] == pytest.approx(1.0)
    assert summary["utility"]["ar"]["raw"]["ensemble_value"] == pytest.approx(0.8)

    evaluation = _evaluation(per_seed)
    evaluation["privacy"], evaluation["utility"] = summary["privacy"], summary["utility"]
    evaluation["trained_method"] = {"name": "noise@0.2", "id": "abc"}
    tree = metrics_tree.build_metrics(evaluation, _bias(), params_from_dict({}).gate)
    assert tree["privacy"]["trained"]["method"] == "noise@0.2"
    assert tree["privacy"]["trained"]["normalized_leakage_interval"] == pytest.approx([1.0, 1.0])
    assert tree["utility"]["ar"]["noise@1_relative_drop_interval"][0] == pytest.approx(1.0)
    ar = tree["utility"]["ar"]
    assert ar["trained_relative_drop_interval"] == [0.0, 0.0] and ar["trained_relative_drop_half_width"] == 0.0
    assert ar["noise@1_relative_drop"] == pytest.approx(1.0)  # the ensemble's point
    assert ar["noise@1_relative_drop_seed_mean"] == pytest.approx(0.0)  # per-seed values (all GOOD_UTILITY)
    assert "trained_relative_drop_seed_bootstrap_interval" in ar and "trained_relative_drop_seed_interval" in ar
    assert ar["relative_drop_interval_kind"] == "seed ensemble, bootstrap over test videos"
    decisions = tree["decisions"]
    # leakage [1, 1] lies wholly above 0.4: decided, failed; AR drop [0, 0] wholly within 1%
    assert (decisions["normalized_leakage"]["decided"], decisions["normalized_leakage"]["passed"]) == (True, False)
    assert (decisions["utility_drop_ar"]["decided"], decisions["utility_drop_ar"]["passed"]) == (True, True)
    assert "utility_drop_ad" not in decisions  # AD is unseen in this evaluation
    assert ar["trained_relative_drop_test_videos"] == decisions["utility_drop_ar"]["test_items"] == 10
    assert decisions["utility_drop_ar"]["test_items_to_decide"] == decisions["utility_drop_ar"]["test_items"]
    text = report.write_report(tree, evaluation, _bias(), tmp_path / "report.md").read_text()
    assert "Decisions (gate criteria)" in text and "`noise@0.2`" in text
    assert "seed ensemble" in text


def _with_scopes(run_: dict, video_mean: float, release: float, floor: float | None = None) -> dict:
    run_ = json.loads(json.dumps(run_))
    run_["privacy"]["scopes"] = {
        "moving_video_mean": {**_privacy(video_mean), "n_test_videos": 12},
        "untrimmed_video_mean": {"skipped": "feature set 'untrimmed': no private label column"},
        "rerelease16": {**_privacy(release), "releases": 16},
    }
    if floor is not None:
        run_["privacy"]["floor"] = {"moving": _privacy(floor), "moving_video_mean": _privacy(floor)}
    return run_


def test_every_scope_reaches_metrics_the_report_the_headline_and_the_readme_table(tmp_path):
    per_seed = _per_seed({"raw": ([0.9, 0.9], [GOOD_UTILITY] * 2), "trained": ([0.6, 0.6], [GOOD_UTILITY] * 2)})
    for seed in ("0", "1"):
        per_seed["raw"][seed] = _with_scopes(per_seed["raw"][seed], 0.9, 0.9, floor=0.8)
        # per clip 0.25, per video mean 0.5, 16 releases averaged 0.75: the worst scope is the re-release
        per_seed["trained"][seed] = _with_scopes(per_seed["trained"][seed], 0.7, 0.8)
    summary = summarize(per_seed, [0, 1], 0.95)
    evaluation = {**_evaluation(per_seed), "privacy_floor": {**summary["floor"], "tasks": ["ar", "tad"]}}
    assert evaluation["privacy_utility"]["trained"]["leakage"] == pytest.approx(0.75)  # the plane's x: worst scope
    assert evaluation["privacy_utility"]["trained"]["leakage_scope"] == "rerelease16"
    tree = metrics_tree.build_metrics(evaluation, _bias(), params_from_dict({}).gate)
    scopes_ = tree["privacy"]["trained"]["scopes"]
    assert scopes_["static"]["normalized_leakage"] == pytest.approx(0.25)
    assert scopes_["moving_video_mean"]["normalized_leakage"] == pytest.approx(0.5)
    assert scopes_["rerelease16"]["normalized_leakage"] == pytest.approx(0.75)
    assert scopes_["rerelease16"]["reference"] == "moving"
    assert "no private label column" in scopes_["untrimmed_video_mean"]["skipped"]
    worst = tree["privacy"]["trained"]["worst_scope"]
    assert worst["scope"] == "rerelease16" and worst["normalized_leakage"] == pytest.approx(0.75)
    assert worst["skipped"] == ["untrimmed_video_mean"]
    assert tree["privacy"]["raw"]["worst_scope"]["normalized_leakage"] == pytest.approx(1.0)
    # floor: (0.8 - 0.5) / (0.9 - 0.5) = 0.75, above the 0.4 target
    assert tree["privacy_floor"]["scopes"]["moving"]["normalized_leakage"] == pytest.approx(0.75)
    assert tree["privacy_floor"]["above_target"] is True
    assert "cannot be met at full utility" in tree["privacy_floor"]["implication"]
    assert tree["targets"]["every_scope_upper_bound"]["value"]["scope"] == "rerelease16"
    assert "worst_scope_normalized_leakage" in tree["decisions"]
    json.dumps(tree)

    text = report.write_report(tree, evaluation, _bias(), tmp_path / "report.md").read_text()
    assert "### Privacy in every scope" in text and "16 releases averaged, per clip" in text
    assert (
        "| trained | 0.250 [0.250, 0.250] | 0.250 [0.250, 0.250] | 0.500 [0.500, 0.500] | skipped | "
        "0.750 [0.750, 0.750] | 16 releases averaged, per clip: 0.750 [0.750, 0.750] |"
    ) in text
    assert "**The floor is above the 0.4 target**" in text
    assert "Scope *untrimmed video, mean of its snippets* skipped" in text

    # metrics.json sorts its keys; the tables read per clip, per video, then the re-releases by count
    sorted_tree = json.loads(json.dumps(tree, sort_keys=True))
    assert report_cells.scope_order(sorted_tree["privacy"]["trained"]["scopes"]) == [
        "static",
        "moving",
        "moving_video_mean",
        "untrimmed_video_mean",
        "rerelease16",
    ]
    assert report_cells.scope_order(["rerelease64", "rerelease16_video_mean", "rerelease16"]) == [
        "rerelease16",
        "rerelease16_video_mean",
        "rerelease64",
    ]

    headline = dvc_views.headline_metrics(tree)
    assert headline["privacy"]["worst_scope"] == "rerelease16"
    assert headline["privacy"]["worst_scope_leakage"] == pytest.approx(0.75)
    assert headline["privacy"]["floor"] == pytest.approx(0.75)
    assert headline["scopes"]["moving_video_mean"] == pytest.approx(0.5)
    assert headline["scopes"]["rerelease16"] == pytest.approx(0.75)
    assert headline["scopes"]["untrimmed_video_mean"] is None  # skipped: a null column, not a missing one
    assert "static" not in headline["scopes"]  # per clip: under privacy

    table = readme_table.results_table(tree)
    assert "normalised leakage, worst scope" in table and "(16 releases averaged, per clip)" in table
    assert "leakage, privacy video, mean of its clips" in table
    assert "The floor (what the raw seen-task posteriors leak" in table
    # the trained method's rows carry its own name (no trained_method here: the paper default)
    assert "\n| `paper` (trained) | " in table and "\n| paper (trained) | 0.250 [0.250, 0.250] |" in table


def test_scope_items_get_paired_intervals_against_raw_in_the_same_scope():
    per_seed = _per_seed({"raw": ([0.9, 0.9], [GOOD_UTILITY] * 2), "trained": ([0.6, 0.6], [GOOD_UTILITY] * 2)})
    for seed in ("0", "1"):
        per_seed["raw"][seed] = _with_scopes(per_seed["raw"][seed], 0.9, 0.9, floor=0.8)
        per_seed["trained"][seed] = _with_scopes(per_seed["trained"][seed], 0.7, 0.8)
    raw_items, blind = _items(0.9, [1] * 10), _items(0.5, [1] * 10)  # 0.5: the attacker reads nothing
    items = {
        "raw": {
            k: {**raw_items, "scopes": {"moving_video_mean": raw_items["moving"]}, "floor": {"moving": blind["moving"]}}
            for k in ("0", "1")
        },
        # the per-video mean leaks like raw; 16 releases averaged per clip read nothing beyond chance
        "trained": {
            k: {**raw_items, "scopes": {"moving_video_mean": raw_items["moving"], "rerelease16": blind["moving"]}}
            for k in ("0", "1")
        },
    }
    summary = summarize(per_seed, [0, 1], 0.95, items, n_resamples=200)
    trained = summary["privacy"]["trained"]["scopes"]
    assert (
        trained["moving_video_mean"]["normalized_leakage_paired"]["low"],
        trained["moving_video_mean"]["normalized_leakage_paired"]["high"],
    ) == pytest.approx((1.0, 1.0))
    assert trained["rerelease16"]["normalized_leakage_paired"]["high"] < 0.5  # against raw per clip
    assert "normalized_leakage_paired" not in trained["untrimmed_video_mean"]  # skipped stays skipped
    assert trained["static"]["normalized_leakage_paired"]["mean"] == pytest.approx(1.0)
    # the worst scope reads the paired interval that reaches highest
    assert summary["privacy"]["trained"]["worst_scope"]["high"] == pytest.approx(1.0)
    assert summary["floor"]["seeds"] == [0, 1]
    assert summary["floor"]["scopes"]["moving"]["normalized_leakage_paired"]["high"] < 0.5


def test_an_undefined_interval_is_the_worst_scope():
    finite = {"normalized_leakage": {"mean": 0.9, "low": 0.8, "high": 0.95}}
    undefined = {"normalized_leakage": {"mean": 0.1, "low": float("nan"), "high": float("nan")}}
    worst = worst_scope({"a": finite, "b": undefined, "c": {"skipped": "no labels"}})
    assert worst["scope"] == "b" and worst["skipped"] == ["c"]
    assert worst_scope({"c": {"skipped": "no labels"}})["scope"] is None
