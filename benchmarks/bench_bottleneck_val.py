"""Bottleneck variants judged on the validation split only, as a tune trial judges them.

Fits the ``bottleneck`` method on the train splits of an existing feature store with
``train.bottleneck`` / ``train.tasks`` overridden by a JSON object (on top of the tuned operating
point in reports/tune/chosen.json when there is one), then measures normalised leakage and the
relative drop of every task on val with the tune stage's own ``run_trial``, for each seed. The
test split is never loaded, so a variant can be chosen from these figures.
``--ad-kernels`` replaces the temporal extents the AD head's grid tries (1: a per-snippet head).

    python benchmarks/bench_bottleneck_val.py NAME '{"bottleneck": {"sigma": 0.3}}' [--seeds 0 1 2]

Appends one record to benchmarks/results/bottleneck_val.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from latentanon.config import Layout, load_params

RESULTS = Path(__file__).resolve().parent / "results" / "bottleneck_val.json"
TASKS = ("ar", "tad", "ad")


def set_ad_kernels(kernels: list[int]) -> None:
    from latentanon.tasks import specs

    spec = specs.TASK_SPECS["ad"]
    first = spec.grid[0]["kernel"]
    grid = tuple({**hyper, "kernel": k} for k in kernels for hyper in spec.grid if hyper["kernel"] == first)
    specs.TASK_SPECS["ad"] = replace(spec, grid=grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("overrides", help='JSON: {"bottleneck": {...}, "tasks": {...}}')
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ad-kernels", type=int, nargs="+")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from latentanon.tuning import objectives, trials

    if args.ad_kernels:
        set_ad_kernels(args.ad_kernels)
    params = load_params(args.params)
    layout = Layout.from_params(params)
    overrides = json.loads(args.overrides)
    chosen_path = layout.report_dir("tune") / "chosen.json"
    chosen = json.loads(chosen_path.read_text()).get("bottleneck", {}) if chosen_path.exists() else {}
    bottleneck = replace(params.train.bottleneck, **{**chosen, **overrides.get("bottleneck", {})})
    train = replace(
        params.train,
        method="bottleneck",
        bottleneck=bottleneck,
        tasks=replace(params.train.tasks, **overrides.get("tasks", {})),
    )
    started = time.perf_counter()
    data = trials.load_search_data(layout.features_uri)
    raw = objectives.measure(data.task_sets, data.privacy, TASKS, args.seeds[0])
    runs = []
    for seed in args.seeds:
        trial_params = replace(params, tune=replace(params.tune, seed=seed))
        result = trials.run_trial(data, trial_params.for_search(), train.weights, train, TASKS, raw)
        runs.append({"seed": seed, "normalized_leakage": result["normalized_leakage"], "drops": result["drops"]})
        print(
            f"{args.name} seed {seed}: normalised leakage {result['normalized_leakage']:.3f}, drops "
            + ", ".join(f"{t} {v:+.1%}" for t, v in result["drops"].items()),
            flush=True,
        )
    record = {
        "name": args.name,
        "overrides": overrides,
        "ad_kernels": args.ad_kernels,
        "seeds": args.seeds,
        "bottleneck": {
            k: getattr(bottleneck, k) for k in ("sigma", "compaction", "static_compaction", "code_dim", "hidden")
        },
        "raw_val_utility": raw["utility"],
        "mean": {
            "normalized_leakage": float(np.mean([r["normalized_leakage"] for r in runs])),
            **{f"drop_{t}": float(np.mean([r["drops"][t] for r in runs])) for t in runs[0]["drops"]},
        },
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": platform.machine(),
    }
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([*existing, record], indent=1) + "\n")
    print(json.dumps(record["mean"]))


if __name__ == "__main__":
    main()
