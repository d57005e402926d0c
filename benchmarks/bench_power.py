"""Statistical power: do the paired utility intervals reach their target with more test videos?

The main job's 15-minute budget holds 576 AR, 96 TAD and 192 AD test videos (48 test identities;
train, val and test together are capped at 99 by UCF101's two-digit group ids), and its paired
utility intervals are wider than the 0.025 half-width the benchmark asks for. This runs every stage of a
params file with the test split of each utility set multiplied (``data.test_*_multiplier``: more
test videos of the same test identities; train and val stay the same videos), in its own workdir,
and reports for every task and method the paired relative drop's half-width against the target,
beside what one over the square root of the test videos predicts from the main run's figures.

Evaluate's intervals resample test videos. With many videos per person those videos are not
independent, so the same drops are also resampled by whole test identities (``identity_bootstrap``,
from evaluate's saved per-video items): the interval that speaks for people outside the test set.

    python benchmarks/bench_power.py [--actions 8 --untrimmed 48 --anomaly 4] [--workdir runs/power]
        [--main-metrics reports/metrics.json] [--skip-run]

``--skip-run`` summarises a workdir that has already run. Writes benchmarks/results/power.json and
power.png (half-width against test videos, per task).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench_pipeline import recorded_times, write_result
from latentanon.config import Layout, load_params
from latentanon.data.config import TEST_MULTIPLIERS
from latentanon.evaluation.metric_keys import current_keys
from latentanon.figures import pyplot, save_figure

RESULTS = Path(__file__).resolve().parent / "results" / "power.json"
UTILITY_TARGET = 0.025  # half-width of every method's paired relative drop, per task
LEAKAGE_TARGET = 0.1  # half-width of every method's normalised-leakage interval, static and moving


def power_overrides(workdir: str, actions: int, untrimmed: int, anomaly: int) -> list[str]:
    return [
        f"paths.workdir={workdir}",
        f"data.test_actions_multiplier={actions}",
        f"data.test_untrimmed_multiplier={untrimmed}",
        f"data.test_anomaly_multiplier={anomaly}",
    ]


def run_pipeline(params_file: str, overrides: list[str]) -> float:
    """Every stage, as ``latentanon run`` does it; returns the wall-clock seconds."""
    args = [a for o in overrides for a in ("--set", o)]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "latentanon", "run", "--params", params_file, *args], check=True)
    return round(time.perf_counter() - started, 1)


def utility_widths(metrics: dict) -> dict[str, dict[str, dict]]:
    """Per task and method: the paired relative drop, its interval, half-width and test videos."""
    out = {}
    for task, block in metrics["utility"].items():
        # a method's paired figures end in _relative_drop_test_videos (trained_unseen has its own block)
        suffix = "_relative_drop_test_videos"
        methods = sorted(k[: -len(suffix)] for k in block if k.endswith(suffix))
        out[task] = {
            m: {
                "drop": block[f"{m}_relative_drop"],
                "interval": block[f"{m}_relative_drop_interval"],
                "half_width": block[f"{m}_relative_drop_half_width"],
                "test_videos": int(block[f"{m}_relative_drop_test_videos"]),
            }
            for m in methods
        }
    return out


def leakage_widths(metrics: dict) -> dict[str, dict[str, float]]:
    """Per method except raw (its leakage is 1 by definition): static and moving half-widths."""
    return {
        m: {
            "static": block["normalized_leakage_half_width"],
            "moving": block["moving"]["normalized_leakage_half_width"],
        }
        for m, block in metrics["privacy"].items()
        if m != "raw" and "normalized_leakage_half_width" in block
    }


def predicted_half_width(main: dict, test_videos: int) -> float:
    """The main run's half-width scaled by sqrt(n_main / n): what more test videos alone would give."""
    return main["half_width"] * math.sqrt(main["test_videos"] / test_videos)


def compare(power: dict, main: dict | None, target: float = UTILITY_TARGET) -> list[dict]:
    rows = []
    for task, methods in power.items():
        for method, entry in methods.items():
            row = {"task": task, "method": method, **entry, "target": target, "met": entry["half_width"] <= target}
            reference = (main or {}).get(task, {}).get(method)
            if reference:
                row["main_half_width"] = reference["half_width"]
                row["main_test_videos"] = reference["test_videos"]
                row["predicted_half_width"] = predicted_half_width(reference, entry["test_videos"])
            rows.append(row)
    return rows


def identity_weights(identities, n_resamples: int, seed: int = 0) -> np.ndarray:
    """(B, n_videos) weights of a bootstrap that draws whole test identities with replacement: a
    video counts as often as its person was drawn."""
    from latentanon.evaluation.resampling import resample_weights

    people, person_of_video = np.unique(np.asarray(identities), return_inverse=True)
    drawn = resample_weights(len(people), n_resamples, np.random.default_rng([seed, len(people), n_resamples]))
    return drawn[:, person_of_video]


def identity_bootstrap(
    layout: Layout, seeds: list[int], n_resamples: int = 1000, confidence: float = 0.95
) -> dict[str, dict[str, dict]]:
    """Per task and method: the seed ensemble's paired relative drop resampled by test identity,
    from evaluate's per-video items (``reports/evaluate/items``) and the test records' identities."""
    from latentanon.evaluation.items import load_items
    from latentanon.evaluation.paired import ensemble_drop
    from latentanon.features.store import load_feature_set
    from latentanon.tasks.per_item import ensemble_items
    from latentanon.tasks.specs import TASK_SPECS

    items_dir = layout.report_dir("evaluate") / "items"
    if not all((items_dir / f"raw__{s}.npz").exists() for s in seeds):
        return {}  # evaluate kept no items: nothing to resample
    methods = sorted({p.name.split("__")[0] for p in items_dir.glob("*__*.npz")} - {"raw"})
    loaded = {(m, s): load_items(items_dir / f"{m}__{s}.npz")["utility"] for m in ["raw", *methods] for s in seeds}
    out = {}
    for task, spec in TASK_SPECS.items():
        if task not in loaded[("raw", seeds[0])]:
            continue
        identities = load_feature_set(layout.features_uri, spec.set_name).split("test").records["identity"]
        weights = identity_weights(identities.to_numpy(), n_resamples)
        raw = ensemble_items(task, [loaded[("raw", s)][task] for s in seeds], "raw")
        out[task] = {}
        for method in methods:
            drop = ensemble_drop(
                task, raw, ensemble_items(task, [loaded[(method, s)][task] for s in seeds], method), weights, confidence
            )
            out[task][method] = {
                "drop": drop["point"],
                "interval": [drop["low"], drop["high"]],
                "half_width": drop["half_width"],
                "identities": int(identities.nunique()),
                "test_videos": drop["n_videos"],
            }
    return out


def generated_multipliers(layout: Layout) -> dict[str, int] | None:
    """The test multipliers the workdir's benchmark was generated with (its generation stamp), so a
    summary says what it measured whatever the command line says; None without a stamp."""
    from latentanon.data.layouts import STAMP_FILE

    path = layout.data_root / STAMP_FILE
    if not path.exists():
        return None
    stamp = json.loads(path.read_text())["config"]
    return {k: int(stamp.get(k, 1)) for k in TEST_MULTIPLIERS}


def plot_widths(rows: list[dict], path: Path, target: float = UTILITY_TARGET) -> Path:
    """Per task: each method's half-width at the main run's and at this run's test videos, the
    1/sqrt(n) line through the main run's, and the target."""
    plt = pyplot()
    order = ("ar", "tad", "ad")
    tasks = sorted(dict.fromkeys(r["task"] for r in rows), key=lambda t: (order.index(t) if t in order else 9, t))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in (r for r in rows if r["task"] == task):
            if "main_test_videos" in r:
                line = ax.plot(
                    [r["main_test_videos"], r["test_videos"]],
                    [r["main_half_width"], r["predicted_half_width"]],
                    ":",
                    lw=1,
                )
                ax.plot([r["main_test_videos"]], [r["main_half_width"]], "o", color=line[0].get_color(), ms=4)
                ax.plot([r["test_videos"]], [r["half_width"]], "s", color=line[0].get_color(), ms=5, label=r["method"])
            else:
                ax.plot([r["test_videos"]], [r["half_width"]], "s", ms=5, label=r["method"])
        ax.axhline(target, color="k", lw=1, ls="--")
        ax.set(
            xscale="log",
            yscale="log",
            title=f"{task.upper()}: paired relative drop",
            xlabel="test videos",
            ylabel="interval half-width",
        )
        # plain ticks at the two sizes and at round half-widths (log-scale minor labels crowd)
        task_rows = [r for r in rows if r["task"] == task]
        videos = sorted({r["test_videos"] for r in task_rows} | {r.get("main_test_videos", 0) for r in task_rows} - {0})
        widths = [w for r in task_rows for w in (r["half_width"], r.get("main_half_width", r["half_width"]))]
        ax.minorticks_off()
        ax.set_xticks(videos, [str(v) for v in videos])
        ticks = [
            t for t in (0.005, 0.01, 0.025, 0.05, 0.1, 0.2) if min(widths + [target]) / 1.5 <= t <= max(widths) * 1.5
        ]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.suptitle("circles: main job; squares: more test videos; dotted: 1/sqrt(n); dashed: target", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--workdir", default="runs/power")
    parser.add_argument("--actions", type=int, default=8, help="data.test_actions_multiplier (AR test videos)")
    parser.add_argument("--untrimmed", type=int, default=48, help="data.test_untrimmed_multiplier (TAD)")
    parser.add_argument("--anomaly", type=int, default=4, help="data.test_anomaly_multiplier (AD)")
    parser.add_argument(
        "--main-metrics",
        default="reports/metrics.json",
        help="the main job's metrics, for the 1/sqrt(n) prediction (skipped if absent)",
    )
    parser.add_argument("--skip-run", action="store_true", help="summarise the workdir's last run")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    overrides = power_overrides(args.workdir, args.actions, args.untrimmed, args.anomaly)
    layout = Layout.from_params(load_params(args.params, overrides))
    wall = None if args.skip_run else run_pipeline(args.params, overrides)
    metrics_path = layout.reports / "metrics.json"
    if not metrics_path.exists():
        print(f"{metrics_path}: no metrics; run without --skip-run first", file=sys.stderr)
        return 2
    # either run's metrics.json may come from an earlier release (``aam`` for ``trained``)
    metrics = current_keys(json.loads(metrics_path.read_text()))
    main_path = Path(args.main_metrics)
    main_widths = utility_widths(current_keys(json.loads(main_path.read_text()))) if main_path.exists() else None

    rows = compare(utility_widths(metrics), main_widths)
    evaluate_seeds = [int(s) for s in (metrics.get("seeds") or {}).get("evaluate", [])]
    by_identity = (
        identity_bootstrap(layout, evaluate_seeds, confidence=metrics.get("confidence", 0.95)) if evaluate_seeds else {}
    )
    for row in rows:
        row["identity_bootstrap"] = by_identity.get(row["task"], {}).get(row["method"])
    probe_path = layout.report_dir("pretrain_encoder") / "probe.json"
    probe = json.loads(probe_path.read_text()).get("action_probe") if probe_path.exists() else None
    leakage = leakage_widths(metrics)
    stage_seconds = recorded_times(layout)
    result = {
        "params": args.params,
        "workdir": args.workdir,
        "generated_with": generated_multipliers(layout),
        "wall_seconds": wall,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "stage_seconds": stage_seconds,
        "total_stage_seconds": round(sum(stage_seconds.values()), 1),
        "utility_target": UTILITY_TARGET,
        "leakage_target": LEAKAGE_TARGET,
        "utility": rows,
        "utility_targets_met": all(r["met"] for r in rows),
        "leakage": leakage,
        "leakage_targets_met": all(v <= LEAKAGE_TARGET for w in leakage.values() for v in w.values()),
        "decisions": metrics.get("decisions", {}),
        "encoder_action_probe": probe,
        "raw_utility": {
            t: metrics["utility"][t]["raw"]["ensemble_value"]
            for t in metrics["utility"]
            if "ensemble_value" in metrics["utility"][t].get("raw", {})
        },
    }
    print(
        f"{'task':>4s} {'method':>12s} {'videos':>7s} {'half-width':>10s} {'predicted':>9s} {'by person':>9s}"
        f"  target {UTILITY_TARGET}"
    )
    for r in rows:
        predicted = f"{r['predicted_half_width']:9.3f}" if "predicted_half_width" in r else f"{'-':>9s}"
        person = f"{r['identity_bootstrap']['half_width']:9.3f}" if r["identity_bootstrap"] else f"{'-':>9s}"
        print(
            f"{r['task']:>4s} {r['method']:>12s} {r['test_videos']:7d} {r['half_width']:10.3f} {predicted} {person}  "
            f"{'met' if r['met'] else 'NOT met'}"
        )
    widest = max((v for w in leakage.values() for v in w.values()), default=float("nan"))
    print(f"leakage half-widths: widest {widest:.3f} (target {LEAKAGE_TARGET})")
    for name, decision in result["decisions"].items():
        print(
            f"decision {name}: decided={decision.get('decided')} passed={decision.get('passed')} "
            f"interval={[round(v, 4) for v in decision.get('interval', [])]}"
        )
    print(f"stages {result['total_stage_seconds']:.0f} s; utility targets met: {result['utility_targets_met']}")
    out = write_result(result, args.out)
    print(f"written {out} and {plot_widths(rows, out.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
