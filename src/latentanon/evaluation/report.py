"""reports/metrics.json (the nested figures the gate reads) and reports/report.md (for people)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from latentanon._files import write_text_atomic
from latentanon.config import Params
from latentanon.evaluation import metrics
from latentanon.formatting import figure, percent

ISSUE_LEAKAGE_TARGET = 0.4  # normalised leakage at or below this
ISSUE_UTILITY_TARGET = 0.01  # every task within 1% relative of raw


def _interval(stat: dict) -> list[float]:
    return [stat["low"], stat["high"]]


def _leakage_interval(scope: dict) -> list[float]:
    """The paired bootstrap interval when evaluate made one, else the seeds' Student-t interval."""
    paired = scope.get("normalized_leakage_paired")
    return _interval(paired) if paired else _interval(scope["normalized_leakage"])


def _half_width(interval: list[float]) -> float:
    low, high = interval
    return (high - low) / 2 if low is not None and high is not None else float("nan")


SCOPE_LABELS = {
    "static": "static clip",
    "moving": "moving clip",
    "moving_video_mean": "privacy video, mean of its clips",
    "untrimmed_video_mean": "untrimmed video, mean of its snippets",
    "anomaly_video_mean": "anomaly video, mean of its snippets",
}


def scope_order(names) -> list[str]:
    """Scopes in reading order: per clip, per video mean, then the re-releases by count (metrics.json
    sorts its keys alphabetically)."""
    ranks = {name: i for i, name in enumerate(SCOPE_LABELS)}

    def key(scope: str):
        if scope.startswith("rerelease"):
            count = scope[len("rerelease") :].split("_", 1)[0]
            return (len(ranks), int(count) if count.isdigit() else 0, scope.endswith("_video_mean"), scope)
        return (ranks.get(scope, len(ranks)), 0, False, scope)

    return sorted(dict.fromkeys(names), key=key)


def scope_label(scope: str) -> str:
    """What a user shares in ``scope``, in words."""
    if scope.startswith("rerelease"):
        releases = scope[len("rerelease") :].split("_", 1)[0]
        what = "mean of its clips" if scope.endswith("_video_mean") else "per clip"
        return f"{releases} releases averaged, {what}"
    return SCOPE_LABELS.get(scope, scope)


def _scope_entry(block: dict) -> dict:
    """One scope's figures: normalised leakage (mean) with its interval (paired bootstrap when
    evaluate made one), or why the scope was skipped."""
    if "skipped" in block:
        return {"skipped": block["skipped"]}
    paired = block.get("normalized_leakage_paired")
    entry = {
        "normalized_leakage": block["normalized_leakage"]["mean"],
        "normalized_leakage_interval": _interval(paired) if paired else _interval(block["normalized_leakage"]),
        "normalized_leakage_seed_interval": _interval(block["normalized_leakage"]),
        "interval_kind": "paired bootstrap" if paired else "seeds (Student-t)",
        "cmap": block["cmap"]["mean"],
        "chance": block["chance"]["mean"],
        "reference": block.get("reference"),
    }
    if block.get("n_test_videos") is not None:
        entry["n_test_videos"] = block["n_test_videos"]
    if block.get("deterministic"):
        entry["deterministic"] = block["deterministic"]
    return entry


def _worst_entry(worst: dict) -> dict:
    return {
        "scope": worst.get("scope"),
        "normalized_leakage": worst.get("mean"),
        "normalized_leakage_interval": [worst.get("low"), worst.get("high")],
        "skipped": list(worst.get("skipped") or []),
    }


def _privacy_entry(block: dict) -> dict:
    static, moving = block["static"], block["moving"]
    entry = _privacy_figures(block, static, moving)
    if "scopes" in block:
        entry["scopes"] = {scope: _scope_entry(b) for scope, b in block["scopes"].items()}
    if "worst_scope" in block:
        entry["worst_scope"] = _worst_entry(block["worst_scope"])
    entry["normalized_leakage_interval"] = _leakage_interval(static)
    entry["normalized_leakage_seed_interval"] = _interval(static["normalized_leakage"])
    entry["normalized_leakage_half_width"] = _half_width(entry["normalized_leakage_interval"])
    entry["moving"]["normalized_leakage_interval"] = _leakage_interval(moving)
    entry["moving"]["normalized_leakage_seed_interval"] = _interval(moving["normalized_leakage"])
    entry["moving"]["normalized_leakage_half_width"] = _half_width(entry["moving"]["normalized_leakage_interval"])
    entry["interval_kind"] = "paired bootstrap" if static.get("normalized_leakage_paired") else "seeds (Student-t)"
    if "recovery_r2" in block:
        entry["recovery_r2"] = block["recovery_r2"]["mean"]
        entry["recovery_r2_interval"] = _interval(block["recovery_r2"])
    if "paper_protocol" in block:
        entry["paper_protocol"] = {
            scope: {
                "cmap": b["cmap"]["mean"],
                "relative_cmap_drop": b["relative_cmap_drop"]["mean"],
                "relative_cmap_drop_interval": _interval(b["relative_cmap_drop"]),
                "normalized_leakage": b["normalized_leakage"]["mean"],
            }
            for scope, b in block["paper_protocol"].items()
        }
    return entry


def _privacy_figures(block: dict, static: dict, moving: dict) -> dict:
    return {
        "cmap": static["cmap"]["mean"],
        "cmap_interval": _interval(static["cmap"]),
        "chance": static["chance"]["mean"],
        "relative_cmap_drop": static["relative_cmap_drop"]["mean"],
        "relative_cmap_drop_interval": _interval(static["relative_cmap_drop"]),
        "normalized_leakage": static["normalized_leakage"]["mean"],
        "normalized_leakage_interval": _interval(static["normalized_leakage"]),
        "attributes": {
            a: {
                "map": v["map"]["mean"],
                "chance": v["chance"]["mean"],
                "normalized_leakage": v["normalized_leakage"]["mean"],
                "normalized_leakage_interval": _interval(v["normalized_leakage"]),
            }
            for a, v in static["attributes"].items()
        },
        "moving": {
            "cmap": moving["cmap"]["mean"],
            "cmap_interval": _interval(moving["cmap"]),
            "chance": moving["chance"]["mean"],
            "relative_cmap_drop": moving["relative_cmap_drop"]["mean"],
            "normalized_leakage": moving["normalized_leakage"]["mean"],
            "normalized_leakage_interval": _interval(moving["normalized_leakage"]),
        },
        "reid_top1": block["reid"]["top1"]["mean"],
        "reid_top1_interval": _interval(block["reid"]["top1"]),
        "reid_chance": block["reid"]["chance"]["mean"],
        "gait_top1": block["gait"]["top1"]["mean"],
        "gait_top1_interval": _interval(block["gait"]["top1"]),
        "gait_chance": block["gait"]["chance"]["mean"],
    }


def _utility_entry(task: str, block: dict, seen: bool, methods: list[str]) -> dict:
    """A task's figures. ``<m>_relative_drop`` and its ``_interval`` are the seed ensemble's (heads'
    outputs averaged over the seeds, bootstrap over the test videos) when evaluate made them, else
    the mean over seeds with its Student-t interval; the per-seed figures stay beside them."""
    entry = {"metric": block["metric"], "seen_in_training": seen}
    for method in methods:
        entry[method] = {"value": block[method]["value"]["mean"], "interval": _interval(block[method]["value"])}
        if "inputs" in block[method]:
            entry[method]["inputs"] = list(block[method]["inputs"])
        if "ensemble_value" in block[method]:
            entry[method]["ensemble_value"] = block[method]["ensemble_value"]
        if method != "raw":
            ensemble = block[method].get("relative_drop_ensemble")
            seed_bootstrap = block[method].get("relative_drop_paired")
            entry[f"{method}_relative_drop"] = ensemble["point"] if ensemble else block[method]["relative_drop"]["mean"]
            entry[f"{method}_relative_drop_interval"] = (
                _interval(ensemble) if ensemble else _interval(block[method]["relative_drop"])
            )
            entry[f"{method}_relative_drop_half_width"] = _half_width(entry[f"{method}_relative_drop_interval"])
            if ensemble and "n_videos" in ensemble:
                entry[f"{method}_relative_drop_test_videos"] = int(ensemble["n_videos"])
            entry[f"{method}_relative_drop_seed_mean"] = block[method]["relative_drop"]["mean"]
            entry[f"{method}_relative_drop_seed_interval"] = _interval(block[method]["relative_drop"])
            if seed_bootstrap:
                entry[f"{method}_relative_drop_seed_bootstrap_interval"] = _interval(seed_bootstrap)
    entry["relative_drop_interval_kind"] = (
        "seed ensemble, bootstrap over test videos"
        if any(block[m].get("relative_drop_ensemble") for m in methods if m != "raw")
        else "seeds (Student-t)"
    )
    return entry


def decisions(privacy: dict, utility: dict, params: Params) -> dict:
    """Per gate criterion: the interval, its threshold, and whether the interval lies wholly on one
    side (decided) and on which (passed). An undecided privacy criterion fails the gate."""
    from latentanon.evaluation.resampling import decided, items_to_decide

    cfg = params.gate

    def one(interval, threshold, rule, kind, n_items=None):
        block = decided({"low": interval[0], "high": interval[1]}, threshold, rule)
        out = {"interval": list(interval), **block, "kind": kind}
        if n_items:
            # how much test data the criterion needs: what a user collects to decide it
            out["test_items"] = int(n_items)
            out["test_items_to_decide"] = items_to_decide(
                {"low": interval[0], "high": interval[1]}, threshold, int(n_items)
            )
        return out

    out = {
        "normalized_leakage": one(
            privacy["aam"]["normalized_leakage_interval"], cfg.max_normalized_leakage, "<=", "privacy"
        ),
        "moving_normalized_leakage": one(
            privacy["aam"]["moving"]["normalized_leakage_interval"], cfg.max_moving_normalized_leakage, "<=", "privacy"
        ),
    }
    worst = privacy["aam"].get("worst_scope")
    if worst is not None:
        out["worst_scope_normalized_leakage"] = {
            **one(
                [v if v is not None else float("nan") for v in worst["normalized_leakage_interval"]],
                cfg.max_normalized_leakage,
                "<=",
                "privacy",
            ),
            "scope": worst["scope"],
        }
    for task in cfg.utility_tasks:
        if task in utility and utility[task]["seen_in_training"]:
            out[f"utility_drop_{task}"] = one(
                utility[task]["aam_relative_drop_interval"],
                cfg.max_utility_relative_drop,
                "<=",
                "utility",
                utility[task].get("aam_relative_drop_test_videos"),
            )
    return out


def _bias_entry(block: dict) -> dict:
    return {
        "gap": block["gap"],
        "overall": block["overall"],
        "by_gender": block["by_gender"],
    }


def _targets(evaluation: dict, privacy: dict, utility: dict, params: Params) -> dict:
    leakage = privacy["aam"]["normalized_leakage"]
    drops = {task: utility[task]["aam_relative_drop"] for task in utility}
    points = evaluation["privacy_utility"]
    aam_point = (points["aam"]["leakage"], points["aam"]["relative_utility"])
    dominators = [
        m
        for m, p in points.items()
        if m not in ("aam", "raw") and metrics.dominates((p["leakage"], p["relative_utility"]), aam_point)
    ]
    finite = lambda v: v is not None and math.isfinite(v)  # noqa: E731
    upper = privacy["aam"].get("normalized_leakage_interval", [None, None])[1]
    moving_upper = privacy["aam"]["moving"].get("normalized_leakage_interval", [None, None])[1]
    worst_upper = ((privacy["aam"].get("worst_scope") or {}).get("normalized_leakage_interval") or [None, None])[1]
    return {
        "normalized_leakage": {
            "rule": f"privacy.aam.normalized_leakage <= {ISSUE_LEAKAGE_TARGET}",
            "value": leakage,
            "passed": bool(finite(leakage) and leakage <= ISSUE_LEAKAGE_TARGET),
        },
        "normalized_leakage_upper_bounds": {
            "rule": f"upper bounds of the static and moving normalised-leakage intervals <= {ISSUE_LEAKAGE_TARGET}",
            "value": {"static": upper, "moving": moving_upper},
            "passed": bool(finite(upper) and finite(moving_upper) and max(upper, moving_upper) <= ISSUE_LEAKAGE_TARGET),
        },
        "every_scope_upper_bound": {
            "rule": f"upper bound of the worst scope's normalised-leakage interval <= {ISSUE_LEAKAGE_TARGET}",
            "value": {"scope": (privacy["aam"].get("worst_scope") or {}).get("scope"), "upper": worst_upper},
            "passed": bool(finite(worst_upper) and worst_upper <= ISSUE_LEAKAGE_TARGET),
        },
        "utility_within_1pct": {
            "rule": f"every utility.<task>.aam_relative_drop <= {ISSUE_UTILITY_TARGET}",
            "value": drops,
            "passed": bool(all(finite(d) and d <= ISSUE_UTILITY_TARGET for d in drops.values())),
        },
        "not_dominated": {
            "rule": "no baseline has both lower worst-scope leakage and higher mean relative utility than AAM",
            "value": dominators,
            "passed": not dominators,
        },
        "gate_relative_cmap_drop": {
            "rule": f"privacy.aam.relative_cmap_drop >= {params.gate.min_relative_cmap_drop} (gate threshold)",
            "value": privacy["aam"]["relative_cmap_drop"],
            "passed": bool(
                finite(privacy["aam"]["relative_cmap_drop"])
                and privacy["aam"]["relative_cmap_drop"] >= params.gate.min_relative_cmap_drop
            ),
        },
    }


def build_metrics(evaluation: dict, bias: dict, params: Params) -> dict:
    """The nested metrics tree: privacy / utility / bias / baselines, with seeds and intervals."""
    methods = list(evaluation["methods"])
    privacy: dict[str, Any] = {m: _privacy_entry(evaluation["privacy"][m]) for m in methods}
    privacy["attributes"] = list(evaluation["attributes"])
    utility = {
        task: _utility_entry(task, block, evaluation["tasks"][task]["seen_in_training"], methods)
        for task, block in evaluation["utility"].items()
    }
    bias_tree = {source: _bias_entry(bias["pooled"][source]) for source in bias["sources"]}
    bias_tree["variants"] = {v: {s: _bias_entry(b) for s, b in block.items()} for v, block in bias["variants"].items()}
    bias_tree["protocol"] = bias["protocol"]
    bias_tree["seeds"] = bias["seeds"]
    tree = {
        "seeds": {"evaluate": evaluation["seeds"], "audit_bias": bias["seeds"]},
        "confidence": evaluation["confidence"],
        "privacy": privacy,
        "utility": utility,
        "bias": bias_tree,
        "baselines": {
            "methods": [m for m in methods if m not in ("raw", "aam")],
            "identity_is_raw": True,
            "needs_private_labels": {m: v["needs_private_labels"] for m, v in evaluation["baselines"].items()},
            "privacy_utility": evaluation["privacy_utility"],
        },
    }
    trained = evaluation.get("trained_method") or {}
    privacy["aam"]["method"] = trained.get("name", "paper")
    # the fingerprint the gate compares with the adapter it registers: figures bind to one method
    tree["trained_method"] = {"name": trained.get("name", "paper"), "id": trained.get("id")}
    unseen = evaluation.get("unseen_tasks")
    if unseen:
        for task, block in unseen["tasks"].items():
            if task in utility:
                utility[task]["aam_unseen"] = {
                    "method": unseen["method"],
                    "trained_on": block["trained_on"],
                    "seeds": unseen["seeds"],
                    "value": block["value"]["mean"],
                    "raw_value": block["raw_value"]["mean"],
                    "relative_drop": block["relative_drop"]["mean"],
                    "relative_drop_interval": (
                        _interval(block["relative_drop_paired"])
                        if "relative_drop_paired" in block
                        else _interval(block["relative_drop"])
                    ),
                }
    floor = evaluation.get("privacy_floor")
    if floor:
        tree["privacy_floor"] = floor_entry(floor)
    tree["targets"] = _targets(evaluation, privacy, utility, params)
    tree["decisions"] = decisions(privacy, utility, params)
    return tree


def floor_entry(floor: dict) -> dict:
    """The floor's figures, and what it implies when it is above the leakage target."""
    entry: dict[str, Any] = {
        "tasks": list(floor.get("tasks") or []),
        "seeds": list(floor.get("seeds") or []),
        "scopes": {scope: _scope_entry(b) for scope, b in floor["scopes"].items()},
        "worst_scope": _worst_entry(floor["worst_scope"]),
    }
    worst = entry["worst_scope"]["normalized_leakage"]
    entry["above_target"] = bool(worst is not None and math.isfinite(worst) and worst > ISSUE_LEAKAGE_TARGET)
    entry["implication"] = (
        "the floor could not be measured in any scope" if worst is None or not math.isfinite(worst) else None
    ) or (
        f"the raw seen-task posteriors alone leak {worst:.3f} (scope {entry['worst_scope']['scope']}), above the "
        f"{ISSUE_LEAKAGE_TARGET} target: a method that keeps every seen task's utility keeps at least this leak "
        "there, so the target cannot be met at full utility in that scope; meeting it costs seen-task utility or "
        "needs a target the posteriors allow"
        if entry["above_target"]
        else f"the raw seen-task posteriors leak at most {ISSUE_LEAKAGE_TARGET} in every scope: full seen-task utility "
        "and the leakage target are compatible"
    )
    return entry


INPUT_ABBREVIATIONS = {"principal_axes": "axes", "standardised": "std"}


def _head_inputs_rule(forms: list[str]) -> str:
    if len(forms) == 1:
        return f"heads reading {forms[0]} features"
    return (
        f"heads reading {' or '.join(forms)} features, whichever a default-hyper-parameter head scores "
        "better on validation (the first on a tie)"
    )


def _with_interval(mean, interval) -> str:
    if not interval or any(v is None or not math.isfinite(v) for v in interval):
        return figure(mean)
    return f"{figure(mean)} [{figure(interval[0])}, {figure(interval[1])}]"


def _pct(value) -> str:
    return percent(value, digits=2)  # the report's tables keep two decimals of a percentage point


def _scope_cell(entry: dict | None) -> str:
    if not entry:
        return "-"
    if "skipped" in entry:
        return "skipped"
    return _with_interval(entry.get("normalized_leakage"), entry.get("normalized_leakage_interval"))


def scope_report_lines(privacy: dict, methods: list[str], floor: dict | None) -> list[str]:
    """The per-scope table of every method, the skipped scopes with their reasons, and the floor."""
    names = scope_order(s for m in methods for s in (privacy[m].get("scopes") or {}))
    if not names:
        return []
    lines = [
        "",
        "### Privacy in every scope",
        "",
        "Normalised leakage (cMAP - chance) / (raw cMAP - chance) of what a user shares, raw measured in the "
        "same scope; attackers (linear and MLP, standardised and whitened) trained and scored in the scope, "
        "chosen on validation. Re-release: the privacy videos published R times through the method's own "
        "publish path (fresh noise each time, as the anonymize stage writes them), averaged per clip. "
        "The gate judges the worst scope (the interval that reaches highest).",
        "",
        "| method | " + " | ".join(scope_label(n) for n in names) + " | worst scope |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for m in methods:
        entries = privacy[m].get("scopes") or {}
        worst = privacy[m].get("worst_scope") or {}
        lines.append(
            f"| {m} | " + " | ".join(_scope_cell(entries.get(n)) for n in names) + " | "
            f"{scope_label(worst['scope']) if worst.get('scope') else 'n/a'}: "
            f"{_with_interval(worst.get('normalized_leakage'), worst.get('normalized_leakage_interval'))} |"
        )
    skipped = {n: e["skipped"] for m in methods for n, e in (privacy[m].get("scopes") or {}).items() if "skipped" in e}
    deterministic = sorted(
        {m for m in methods for e in (privacy[m].get("scopes") or {}).values() if e.get("deterministic")} - {"raw"}
    )
    if deterministic:
        lines += [
            "",
            "Publishing twice gave identical features for "
            + ", ".join(f"`{m}`" for m in deterministic)
            + ": their re-release scopes repeat the one-release figures (R releases were not drawn).",
        ]
    for n, why in skipped.items():
        lines += ["", f"Scope *{scope_label(n)}* skipped: {why}."]
    if floor:
        lines += [
            "",
            "### The floor: what the seen tasks' posteriors leak",
            "",
            "Attackers on the raw features' seen-task posteriors (the outputs of the strongest raw heads "
            f"of {', '.join(t.upper() for t in floor['tasks']) or 'no task'}, as evaluate selected them on "
            "validation), normalised against raw features in the same scope: any method that keeps every "
            "seen task's utility keeps what these outputs carry.",
            "",
            "| scope | normalised leakage |",
            "|---|---|",
        ]
        for n in scope_order(floor["scopes"]):
            lines.append(f"| {scope_label(n)} | {_scope_cell(floor['scopes'][n])} |")
        lines += [
            "",
            ("**The floor is above the 0.4 target**: " if floor["above_target"] else "")
            + floor["implication"][0].upper()
            + floor["implication"][1:]
            + ".",
        ]
    return lines


def write_report(tree: dict, evaluation: dict, bias: dict, path: Path) -> Path:
    """A readable markdown report: what was measured, tables, targets with pass/fail, plots."""
    methods = list(evaluation["methods"])
    privacy, utility = tree["privacy"], tree["utility"]
    needs = tree["baselines"]["needs_private_labels"]
    conf = int(round(100 * tree["confidence"]))
    lines = [
        "# latentanon evaluation report",
        "",
        f"Seeds: evaluate {tree['seeds']['evaluate']}, audit_bias {tree['seeds']['audit_bias']}. "
        f"Every figure is the mean over seeds with a {conf}% Student-t interval in brackets, except the "
        "utility drops, which are the seed ensemble's (see Utility).",
        "Attackers, task heads and their hyper-parameters are selected on the validation split only; "
        "the test split is scored once.",
        "",
        "## What was measured",
        "",
        "- **Privacy (static)**: attackers trained with private labels (L-BFGS logistic regression and "
        "early-stopped MLPs, on standardised and on ZCA-whitened inputs, and a larger 2-hidden-layer MLP) "
        f"({', '.join(privacy['attributes'])}) on static-clip features of the privacy train split "
        "(videos and images), chosen per attribute on validation; cMAP over every attribute class on "
        "test, its chance level (mean class prevalence), relative cMAP drop (raw - x) / raw and "
        "normalised leakage (cMAP - chance) / (raw cMAP - chance).",
        "- **Privacy (moving)**: the same attackers on moving-clip features of the privacy videos.",
        "- **Re-identification / gait**: top-1 identity retrieval by cosine nearest neighbour among "
        "test videos (static clips / moving clips), no training.",
        "- **Utility**: "
        + ", ".join(
            f"{t.upper()} ({utility[t]['metric']}, {'seen' if utility[t]['seen_in_training'] else 'unseen'} in training)"
            for t in utility
        )
        + f"; {_head_inputs_rule(evaluation.get('head_inputs', ['standardised']))}, "
        "fitted on train, selected on validation.",
        "- **Bias**: NTU-Bias-F / -M protocol (see below), accuracy per gender and gap via fairlearn.",
        "",
        "Methods: `raw` (the identity baseline: features shared unchanged), `aam` (the method the train "
        f"stage trained: `{privacy['aam'].get('method', 'paper')}`), "
        + ", ".join(
            f"`{m}`{' (needs private labels)' if needs.get(m) else ''}" for m in methods if m not in ("raw", "aam")
        )
        + ".",
        "",
        "## Targets",
        "",
        "| target | value | result |",
        "|---|---|---|",
    ]
    for name, target in tree["targets"].items():
        value = target["value"]
        if isinstance(value, dict) and name == "normalized_leakage_upper_bounds":
            shown = ", ".join(f"{k} {figure(v)}" for k, v in value.items())
        elif isinstance(value, dict) and name == "every_scope_upper_bound":
            shown = f"{scope_label(value['scope']) if value.get('scope') else 'no scope measured'}: {figure(value.get('upper'))}"
        elif isinstance(value, dict):
            shown = ", ".join(f"{k} {_pct(v)}" for k, v in value.items())
        elif isinstance(value, list):
            shown = ", ".join(value) or "none"
        else:
            shown = figure(value)
        lines.append(f"| {target['rule']} | {shown} | {'PASS' if target['passed'] else 'FAIL'} |")
    lines += [
        "",
        "## Decisions (gate criteria)",
        "",
        "An interval decides a criterion when it lies wholly on one side of the threshold; an "
        "undecided privacy criterion fails the gate. *Test videos to decide*: about how many test videos "
        "would narrow an undecided interval to its distance from the threshold (half-widths shrink "
        "as one over the square root of the videos; an estimate).",
        "",
        "| criterion | interval | threshold | decided | result | test videos (to decide) |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in tree.get("decisions", {}).items():
        verdict = "PASS" if d["passed"] else ("FAIL" if d["decided"] else "undecided")
        videos = (
            "-"
            if "test_items" not in d
            else (f"{d['test_items']}" if d["decided"] else f"{d['test_items']} ({d['test_items_to_decide'] or 'n/a'})")
        )
        lines.append(
            f"| {name} | [{figure(d['interval'][0])}, {figure(d['interval'][1])}] | {d['rule']} "
            f"{figure(d['threshold'])} | {'yes' if d['decided'] else 'no'} | {verdict} | {videos} |"
        )
    lines += [
        "",
        "The paper reports a 29-35% relative cMAP drop at 1-2.6% relative utility cost; this project "
        "aims at normalised leakage <= 0.4 with every task within 1% relative of raw.",
        "",
        "## Privacy",
        "",
        "| method | static cMAP | chance | relative cMAP drop | normalised leakage | moving cMAP | "
        "moving leakage | re-id top-1 (chance) | gait top-1 (chance) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        p = privacy[m]
        lines.append(
            f"| {m} | {_with_interval(p['cmap'], p['cmap_interval'])} | {figure(p['chance'])} | "
            f"{_with_interval(p['relative_cmap_drop'], p['relative_cmap_drop_interval'])} | "
            f"{_with_interval(p['normalized_leakage'], p['normalized_leakage_interval'])} | "
            f"{_with_interval(p['moving']['cmap'], p['moving']['cmap_interval'])} | "
            f"{_with_interval(p['moving']['normalized_leakage'], p['moving']['normalized_leakage_interval'])} | "
            f"{figure(p['reid_top1'])} ({figure(p['reid_chance'])}) | {figure(p['gait_top1'])} ({figure(p['gait_chance'])}) |"
        )
    lines += [
        "",
        f"Normalised-leakage intervals: {privacy['aam'].get('interval_kind', 'seeds')} "
        "(raw and each method on the same resamples of the same test items, combined with the seeds). "
        f"`aam` is method `{privacy['aam'].get('method', 'paper')}`.",
        "",
        "| method | static leakage half-width | moving leakage half-width | feature recovery R^2 | "
        "paper protocol: static relative cMAP drop | paper protocol: moving relative cMAP drop |",
        "|---|---|---|---|---|---|",
    ]
    for m in methods:
        p = privacy[m]
        protocol = p.get("paper_protocol", {})
        lines.append(
            f"| {m} | {figure(p.get('normalized_leakage_half_width'))} | "
            f"{figure(p['moving'].get('normalized_leakage_half_width'))} | "
            f"{_with_interval(p.get('recovery_r2'), p.get('recovery_r2_interval')) if 'recovery_r2' in p else '-'} | "
            f"{_pct(protocol.get('static', {}).get('relative_cmap_drop', float('nan')))} | "
            f"{_pct(protocol.get('moving', {}).get('relative_cmap_drop', float('nan')))} |"
        )
    lines += [
        "",
        "The paper's protocol (its attacker: unstandardised inputs, L2-normalised logits, best "
        "TEST epoch) is shown beside the strong protocol above, never instead of it. Feature recovery: "
        "ridge regression from anonymized back to raw features, fitted on train, R^2 on test.",
    ]
    lines += scope_report_lines(privacy, methods, tree.get("privacy_floor"))
    attributes = privacy["attributes"]
    lines += [
        "",
        "Normalised leakage per attribute (static clips):",
        "",
        "| method | " + " | ".join(attributes) + " |",
        "|---|" + "---|" * len(attributes),
    ]
    for m in methods:
        cells = [
            _with_interval(
                privacy[m]["attributes"][a]["normalized_leakage"],
                privacy[m]["attributes"][a]["normalized_leakage_interval"],
            )
            for a in attributes
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Utility",
        "",
        "| method | "
        + " | ".join(f"{t.upper()} {utility[t]['metric']}" for t in utility)
        + " | "
        + " | ".join(f"{t.upper()} relative drop" for t in utility)
        + " |",
        "|---|" + "---|" * (2 * len(utility)),
    ]
    for m in methods:
        values = [_with_interval(utility[t][m]["value"], utility[t][m]["interval"]) for t in utility]
        drops = ["-" if m == "raw" else _pct(utility[t][f"{m}_relative_drop"]) for t in utility]
        lines.append(f"| {m} | " + " | ".join(values) + " | " + " | ".join(drops) + " |")
    lines += [
        "",
        "Relative drops and their intervals are those of the seed ensemble: each method's and raw's "
        f"task heads of the {len(tree['seeds']['evaluate'])} evaluation seeds averaged (AR class "
        "probabilities, TAD snippet class scores before detection, AD anomaly scores), then a paired "
        "bootstrap over the test videos (raw and each method on the same resamples). The per-seed "
        "figures stay in metrics.json (`<method>_relative_drop_seed_mean`, `_seed_interval`, "
        "`_seed_bootstrap_interval`).",
        "",
        "| method | " + " | ".join(f"{t.upper()} drop interval (half-width)" for t in utility) + " |",
        "|---|" + "---|" * len(utility),
    ]
    for m in methods:
        if m == "raw":
            continue
        cells = [
            f"[{_pct(utility[t][f'{m}_relative_drop_interval'][0])}, {_pct(utility[t][f'{m}_relative_drop_interval'][1])}]"
            f" ({_pct(utility[t].get(f'{m}_relative_drop_half_width', float('nan')))})"
            for t in utility
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if any("inputs" in utility[t][m] for t in utility for m in methods):
        lines += [
            "",
            "Head inputs kept on each seed (`axes`: principal axes, `std`: standardised; the form "
            "whose default head scored better on validation):",
            "",
            "| method | " + " | ".join(t.upper() for t in utility) + " |",
            "|---|" + "---|" * len(utility),
        ]
        for m in methods:
            cells = [
                " / ".join(INPUT_ABBREVIATIONS.get(f, f) for f in utility[t][m].get("inputs", [])) or "-"
                for t in utility
            ]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    unseen = {t: utility[t]["aam_unseen"] for t in utility if "aam_unseen" in utility[t]}
    if unseen:
        lines += [
            "",
            "### Unseen tasks",
            "",
            "The trained method refitted with each task held out of its training in turn, that task "
            "then scored as unseen (the paper's Table 4 analogue).",
            "",
            "| held-out task | trained on | value (raw) | relative drop |",
            "|---|---|---|---|",
        ]
        for t, u in unseen.items():
            lines.append(
                f"| {t.upper()} | {', '.join(u['trained_on']) or 'none'} | {figure(u['value'])} "
                f"({figure(u['raw_value'])}) | {_with_interval(u['relative_drop'], u['relative_drop_interval'])} |"
            )
    protocol = bias["protocol"]
    lines += [
        "",
        "## Bias (NTU-Bias-F / NTU-Bias-M)",
        "",
        f"Training keeps a {protocol['skew']:.0%} / {1 - protocol['skew']:.0%} gender skew in every action "
        f"except the shortcut action `{protocol['shortcut_action']}`, where it is flipped "
        f"(F: mostly {protocol['variants']['F']}, M: mostly {protocol['variants']['M']}); validation and "
        "test are gender-balanced per action. AR linear head on moving clips.",
        "",
        "| variant | features | overall accuracy | "
        + " | ".join(f"{g} accuracy" for g in sorted(bias["pooled"]["raw"]["by_gender"]))
        + " | gap |",
        "|---|---|---|" + "---|" * len(bias["pooled"]["raw"]["by_gender"]) + "---|",
    ]
    for variant, block in bias["variants"].items():
        for source, b in block.items():
            cells = [
                _with_interval(b["by_gender"][g]["mean"], _interval(b["by_gender"][g])) for g in sorted(b["by_gender"])
            ]
            lines.append(
                f"| {variant} | {source} | {_with_interval(b['overall']['mean'], _interval(b['overall']))} | "
                + " | ".join(cells)
                + f" | {_with_interval(b['gap']['mean'], _interval(b['gap']))} |"
            )
    plots = evaluation.get("plots", {})
    lines += [
        "",
        "## Plots",
        "",
        f"- Per-attribute leakage: [evaluate/{plots.get('attribute_leakage', 'attribute_leakage.png')}]"
        f"(evaluate/{plots.get('attribute_leakage', 'attribute_leakage.png')})",
        f"- Privacy-utility plane of all methods: [evaluate/{plots.get('privacy_utility', 'privacy_utility.png')}]"
        f"(evaluate/{plots.get('privacy_utility', 'privacy_utility.png')})",
        f"- Bias bars: [audit_bias/{bias.get('plot', 'bias.png')}](audit_bias/{bias.get('plot', 'bias.png')})",
        "",
        "Figures in machine-readable form: [metrics.json](metrics.json), "
        "[evaluate/evaluation.json](evaluate/evaluation.json), [audit_bias/bias.json](audit_bias/bias.json).",
        "",
    ]
    return write_text_atomic(path, "\n".join(lines))


# ---------------------------------------------------------------------------------------------
# The DVC metric (a short headline), data for DVC plots, and the README results table.
# reports/metrics.json stays the full tree (the gate reads it); these are views of it.

HEADLINE_FILE = "headline.json"
PRIVACY_UTILITY_CSV = "privacy_utility.csv"


def _dig(tree, *keys):
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return round(float(value), 4)


def _mean(value):
    """A figure stored either plain or as {"mean", "low", "high"}."""
    return value.get("mean") if isinstance(value, dict) else value


def _bounds(interval) -> tuple[float | None, float | None]:
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        return None, None
    return _number(interval[0]), _number(interval[1])


def headline_metrics(tree: dict) -> dict:
    """About thirty figures a person compares across experiments (`dvc metrics show`,
    `dvc exp show`): the adapter's leakage with intervals in every scope, its utility drops, the
    bias gap.
    Missing figures are null, never dropped, so every experiment has the same columns."""
    aam = _dig(tree, "privacy", "aam") or {}
    static_low, static_high = _bounds(aam.get("normalized_leakage_interval"))
    moving = aam.get("moving") or {}
    moving_low, moving_high = _bounds(moving.get("normalized_leakage_interval"))
    headline: dict[str, Any] = {
        "privacy": {
            "static_leakage": _number(aam.get("normalized_leakage")),
            "static_leakage_low": static_low,
            "static_leakage_high": static_high,
            "moving_leakage": _number(moving.get("normalized_leakage")),
            "moving_leakage_low": moving_low,
            "moving_leakage_high": moving_high,
            "relative_cmap_drop": _number(aam.get("relative_cmap_drop")),
            "reid_top1": _number(aam.get("reid_top1")),
            "worst_scope": (aam.get("worst_scope") or {}).get("scope"),
            "worst_scope_leakage": _number((aam.get("worst_scope") or {}).get("normalized_leakage")),
            "worst_scope_leakage_low": _bounds((aam.get("worst_scope") or {}).get("normalized_leakage_interval"))[0],
            "worst_scope_leakage_high": _bounds((aam.get("worst_scope") or {}).get("normalized_leakage_interval"))[1],
            "floor": _number(_dig(tree, "privacy_floor", "worst_scope", "normalized_leakage")),
        },
        "utility_drop": {},
        "scopes": headline_scopes(tree),
        "bias": {
            "gap_raw": _number(_mean(_dig(tree, "bias", "raw", "gap"))),
            "gap_aam": _number(_mean(_dig(tree, "bias", "aam", "gap"))),
        },
        "targets_passed": sum(bool(t.get("passed")) for t in (tree.get("targets") or {}).values()),
    }
    for task, block in sorted((tree.get("utility") or {}).items()):
        low, high = _bounds(block.get("aam_relative_drop_interval"))
        headline["utility_drop"][task] = _number(block.get("aam_relative_drop"))
        headline["utility_drop"][f"{task}_low"] = low
        headline["utility_drop"][f"{task}_high"] = high
    return headline


def headline_scopes(tree: dict) -> dict:
    """The trained method's normalised leakage in each scope beyond the per-clip two (those are
    under ``privacy``): per-video means and re-releases; a skipped scope is null, not dropped."""
    entries = _dig(tree, "privacy", "aam", "scopes") or {}
    return {
        scope: None if "skipped" in entry else _number(entry.get("normalized_leakage"))
        for scope, entry in entries.items()
        if scope not in ("static", "moving")
    }


def privacy_utility_rows(tree: dict) -> list[dict]:
    """One point per method on the privacy-utility plane (DVC scatter plot data)."""
    rows = []
    for method, point in (_dig(tree, "baselines", "privacy_utility") or {}).items():
        rows.append(
            {
                "method": method,
                "leakage": _number(point.get("leakage")),
                "moving_leakage": _number(_dig(tree, "privacy", method, "moving", "normalized_leakage")),
                "leakage_scope": point.get("leakage_scope"),
                "relative_utility": _number(point.get("relative_utility")),
            }
        )
    return rows


def write_rows_csv(rows: list[dict], path: Path) -> Path:
    """Rows as CSV (empty cells for missing values): the form `dvc plots` reads."""
    import csv
    import io

    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    return write_text_atomic(path, buffer.getvalue())


def history_rows(history: dict) -> list[dict]:
    """Per-epoch loss rows from a training history (lists aligned with ``history['epoch']``)."""
    epochs = history.get("epoch") or []
    series = {
        k: v
        for k, v in history.items()
        if k != "epoch"
        and isinstance(v, list)
        and len(v) == len(epochs)
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    }
    return [{"epoch": e, **{k: _number(v[i]) for k, v in series.items()}} for i, e in enumerate(epochs)]


def pareto_rows(pareto: dict) -> list[dict]:
    """The Pareto front of the tune stage's pareto.json, sorted by leakage."""
    front = sorted(pareto.get("front") or [], key=lambda p: (p.get("leakage") is None, p.get("leakage")))
    return [
        {
            "trial": p.get("trial"),
            "leakage": _number(p.get("leakage")),
            "utility": _number(p.get("utility")),
            "chosen": p.get("trial") == pareto.get("chosen_trial"),
        }
        for p in front
    ]


RESULTS_BEGIN = "<!-- results-table:begin (benchmarks/results_table.py writes this block) -->"
RESULTS_END = "<!-- results-table:end -->"


def results_table(tree: dict) -> str:
    """The README's results table, from reports/metrics.json: every figure with its interval."""
    privacy, utility = tree.get("privacy") or {}, tree.get("utility") or {}
    # metrics.json is written with sorted keys: order the rows raw, aam, then the baselines
    listed = ["raw", "aam", *(_dig(tree, "baselines", "methods") or [])]
    present = [m for m in privacy if isinstance(privacy[m], dict)]
    methods = [m for m in dict.fromkeys(listed) if m in present] + [m for m in present if m not in listed]
    tasks = [t for t in ("ar", "tad", "ad") if t in utility] + [t for t in utility if t not in ("ar", "tad", "ad")]
    conf = _number(tree.get("confidence"))
    seeds = _dig(tree, "seeds", "evaluate")
    n_seeds = len(seeds) if isinstance(seeds, list) else seeds
    chance = _dig(privacy, "raw", "chance")
    header = [
        "method",
        f"static cMAP (chance {figure(chance)})",
        "normalised leakage, static",
        "normalised leakage, moving",
        "normalised leakage, worst scope",
        "re-id top-1",
    ] + [f"{t.upper()} {utility[t].get('metric', '')}".strip() for t in tasks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in methods:
        p = privacy[m]
        moving = p.get("moving") or {}
        cells = [
            f"`{m}`",
            _with_interval(p.get("cmap"), p.get("cmap_interval")),
            _with_interval(p.get("normalized_leakage"), p.get("normalized_leakage_interval")),
            _with_interval(moving.get("normalized_leakage"), moving.get("normalized_leakage_interval")),
            _worst_cell(p.get("worst_scope")),
            _with_interval(p.get("reid_top1"), p.get("reid_top1_interval")),
        ]
        for t in tasks:
            entry = utility[t].get(m) or {}
            cells.append(_with_interval(entry.get("value"), entry.get("interval")))
        lines.append("| " + " | ".join(cells) + " |")
    scope_lines = _scope_table(privacy, methods)
    floor = _dig(tree, "privacy_floor", "worst_scope")
    if floor and floor.get("scope"):
        scope_lines += [
            "",
            f"The floor (what the raw seen-task posteriors leak, worst scope "
            f"*{scope_label(floor['scope'])}*): "
            f"{_with_interval(floor.get('normalized_leakage'), floor.get('normalized_leakage_interval'))}.",
        ]
    lines += scope_lines
    note = (
        f"Means over {n_seeds} seeds with {int(round(100 * conf)) if conf else '?'}% intervals in "
        "brackets, from `reports/metrics.json`. Another machine gives other figures within these "
        "intervals (floating point and thread scheduling differ), not the same digits."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def _worst_cell(worst: dict | None) -> str:
    if not worst or not worst.get("scope"):
        return "n/a"
    return (
        f"{_with_interval(worst.get('normalized_leakage'), worst.get('normalized_leakage_interval'))} "
        f"({scope_label(worst['scope'])})"
    )


def _scope_table(privacy: dict, methods: list[str]) -> list[str]:
    """Every method's normalised leakage in every scope (README: below the results table)."""
    names = scope_order(s for m in methods for s in (privacy[m].get("scopes") or {}))
    if not names:
        return []
    lines = [
        "",
        "| method | " + " | ".join(f"leakage, {scope_label(n)}" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for m in methods:
        entries = privacy[m].get("scopes") or {}
        lines.append(f"| {m} | " + " | ".join(_scope_cell(entries.get(n)) for n in names) + " |")
    return lines


def replace_results_block(document: str, table: str) -> str:
    """``document`` with the text between the results-table markers replaced by ``table``."""
    begin, end = document.find(RESULTS_BEGIN), document.find(RESULTS_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the results-table markers are missing: {RESULTS_BEGIN} ... {RESULTS_END}")
    return document[: begin + len(RESULTS_BEGIN)] + "\n" + table + document[end:]
