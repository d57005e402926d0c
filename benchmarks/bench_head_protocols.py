"""Where the width of the paired utility intervals comes from, judged on the validation split only.

For each head protocol (``restarts`` heads averaged per seed, ``steps`` of training), fits every
task's heads on the train split of raw features and of each method's features (the trained
method from the train stage as ``trained``, and the baselines named), for each seed, and reports the
seed ensemble's paired relative drop on val with its bootstrap half-width over the val videos
(evaluate's own ``paired`` machinery), and for AR the share of val videos whose correctness the
method changes (discordance). If the half-width falls with more restarts or steps, the heads'
training noise made it; if not, the features' difference from raw does, and only more test
videos narrow it. Hyper-parameters are chosen and scored on val; the test split is never loaded.

    python benchmarks/bench_head_protocols.py [--tasks ar tad] [--methods rotation noise@1]
        [--protocols 1:300 5:300 1:1500] [--seeds 0 1 2]

Writes benchmarks/results/head_protocols.json and prints one line per protocol, task and method.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from latentanon.config import Layout, load_params

RESULTS = Path(__file__).resolve().parent / "results" / "head_protocols.json"


def parse_protocol(text: str) -> tuple[int, int]:
    """'RESTARTS:STEPS' -> (restarts, steps)."""
    try:
        restarts, steps = (int(v) for v in text.split(":"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"protocol {text!r}: give RESTARTS:STEPS, e.g. 5:300") from exc
    if restarts < 1 or steps < 1:
        raise argparse.ArgumentTypeError(f"protocol {text!r}: restarts and steps must be positive")
    return restarts, steps


def val_items(task: str, sets: dict, seed: int, restarts: int) -> dict:
    """The task's per-video items on val, from heads chosen on val (the test split stays unread)."""
    from latentanon.tasks import scoring
    from latentanon.tasks.specs import TASK_SPECS

    fs = sets[TASK_SPECS[task].set_name]
    val = fs.split("val")
    return scoring.score_task(task, fs.split("train"), val, val, seed, restarts=restarts, items=True)["items"]


def paired_val_drop(
    task: str, raw_items: list[dict], method_items: list[dict], n_resamples: int, confidence: float
) -> dict:
    """The seed ensemble's relative drop against raw's, over resamples of the val videos."""
    from latentanon.evaluation import resampling
    from latentanon.evaluation.paired import count_test_videos, ensemble_drop
    from latentanon.tasks.per_item import ensemble_items

    raw = ensemble_items(task, raw_items, "raw")
    method = ensemble_items(task, method_items, "method")
    n = count_test_videos(task, raw)
    drop = ensemble_drop(task, raw, method, resampling.shared_weights(n, n_resamples), confidence)
    out = {
        "drop": drop["point"],
        "half_width": drop["half_width"],
        "low": drop["low"],
        "high": drop["high"],
        "val_videos": n,
    }
    if task == "ar":
        out["discordance"] = float((raw["correct"] != method["correct"]).mean())
    return out


def method_sets(name: str, raw: dict, trained, train_cfg, seed: int) -> dict:
    """The feature sets a method turns raw into, its noise keyed by the seed as evaluate keys it."""
    from latentanon.evaluation.pool import fit_baseline

    if name == "trained":
        model = trained.with_reproducible_noise(seed) if trained.stochastic else trained
        return {n: model.transform(fs) for n, fs in raw.items()}
    fitted = fit_baseline(name, train_cfg, raw, 0).with_reproducible_noise(seed)
    return {n: fitted.transform(fs) for n, fs in raw.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--tasks", nargs="+", default=["ar", "tad"])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["trained", "rotation", "noise@1"],
        help="trained (the train stage's method) and baselines that need no private labels",
    )
    parser.add_argument(
        "--protocols",
        nargs="+",
        type=parse_protocol,
        default=[(1, 300), (5, 300), (1, 1500)],
        help="RESTARTS:STEPS per protocol",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--bootstrap", type=int, default=500)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from latentanon.evaluation.measure import load_sets
    from latentanon.methods.registry import load_method
    from latentanon.tasks import fitting
    from latentanon.tasks.specs import TASK_SPECS

    params = load_params(args.params)
    layout = Layout.from_params(params)
    raw = load_sets(layout.features_uri, tuple(TASK_SPECS[t].set_name for t in args.tasks))
    trained = load_method(layout.method_dir) if "trained" in args.methods else None
    default_steps = fitting.HEAD_STEPS
    records = []
    try:
        for restarts, steps in args.protocols:
            fitting.HEAD_STEPS = steps
            started = time.perf_counter()
            items: dict = {}
            for method in ["raw", *args.methods]:
                for seed in args.seeds:
                    sets = raw if method == "raw" else method_sets(method, raw, trained, params.train, seed)
                    for task in args.tasks:
                        items.setdefault(task, {}).setdefault(method, []).append(val_items(task, sets, seed, restarts))
            record = {"restarts": restarts, "steps": steps, "seeds": args.seeds, "tasks": {}}
            for task in args.tasks:
                record["tasks"][task] = {
                    m: paired_val_drop(
                        task, items[task]["raw"], items[task][m], args.bootstrap, params.evaluate.confidence
                    )
                    for m in args.methods
                }
                for m, r in record["tasks"][task].items():
                    extra = f", discordance {r['discordance']:.1%}" if "discordance" in r else ""
                    print(
                        f"restarts {restarts} steps {steps} {task} {m}: drop {r['drop']:+.1%} "
                        f"half-width {r['half_width']:.3f} on {r['val_videos']} val videos{extra}",
                        flush=True,
                    )
            record["seconds"] = round(time.perf_counter() - started, 1)
            records.append(record)
    finally:
        fitting.HEAD_STEPS = default_steps
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.machine(), "protocols": records}, indent=1) + "\n")


if __name__ == "__main__":
    main()
