"""The utility the gate reads for distil variants: the seed ensemble's paired point drops.

The gate judges a method by its seed ensemble (evaluation's heads, seeds 0, 1, 2, each reading
every head input form and keeping the stronger on val, outputs averaged over the seeds) against
raw's ensemble of the same heads. This fits each distil variant once (seed 0, as the train stage
does), scores AR, TAD and AD on its code that way, and prints each task's ensemble drop beside
the mean of the per-seed drops (TAD's 96 test videos make its ensemble point move by a few
points between neighbouring variants). Privacy is bench_scopes.py's job; nothing is written in the
workdir.

    python benchmarks/bench_distil_grid.py --variants step=0.5,ar_step=0.15,ensemble=5 step=0.5
Each variant is comma-separated DistilConfig fields (posteriors with the AD logit otherwise).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import write_result

SPLITS = ("train", "val", "test")


def variant_config(text: str):
    """'step=0.5,ensemble=3' -> a DistilConfig (posteriors, AD logit, per kind unless given)."""
    from latentanon.methods.config import DistilConfig

    types = {f.name: f.type if isinstance(f.type, str) else f.type.__name__ for f in fields(DistilConfig)}
    values: dict = {"outputs": "posteriors", "ad_logit": True}
    for pair in filter(None, text.split(",")):
        key, _, value = pair.partition("=")
        if key not in types:
            raise SystemExit(f"variant {text!r}: unknown DistilConfig field {key!r} (fields: {', '.join(types)})")
        kind = types[key]
        values[key] = (
            int(value)
            if kind == "int"
            else value.lower() in ("1", "true", "yes")
            if kind == "bool"
            else value
            if kind == "str"
            else float(value)
        )
    return DistilConfig(**values)


def ensemble_value(task: str, per_seed: list[dict]) -> float:
    from latentanon.tasks.per_item import ensemble_items, resampled_values

    items = ensemble_items(task, per_seed)
    n = {
        "ar": lambda i: len(i["correct"]),
        "tad": lambda i: len(i["snippet_counts"]),
        "ad": lambda i: int(i["unit_video"].max()) + 1,
    }[task](items)
    return float(resampled_values(task, items, np.ones((1, n)))[0])


def scored(task: str, fs, seeds: tuple[int, ...], inputs: tuple[str, ...]) -> list[dict]:
    from latentanon.tasks.scoring import score_task

    return [score_task(task, *(fs.split(s) for s in SPLITS), seed, items=True, inputs=inputs) for seed in seeds]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="features")
    parser.add_argument("--variants", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="benchmarks/results/distil_grid.json")
    args = parser.parse_args()

    import torch

    from latentanon.config import load_params
    from latentanon.methods.fitting import load_fit_sets
    from latentanon.methods.registry import create_method
    from latentanon.tasks.specs import TASK_SPECS

    torch.set_num_threads(1)
    params = load_params(args.params)
    inputs = tuple(params.evaluate.head_inputs)
    seeds = tuple(args.seeds)
    configs = {v: variant_config(v) for v in args.variants}  # every variant parses before any work
    sets = load_fit_sets(args.features)
    raw = {}
    for task, spec in TASK_SPECS.items():
        runs = scored(task, sets[spec.set_name], seeds, inputs)
        raw[task] = {
            "ensemble": ensemble_value(task, [r["items"] for r in runs]),
            "seed_mean": float(np.mean([r["value"] for r in runs])),
        }
        print(f"raw {task}: ensemble {raw[task]['ensemble']:.4f}, seed mean {raw[task]['seed_mean']:.4f}", flush=True)
    result = {
        "features": args.features,
        "seeds": list(seeds),
        "head_inputs": list(inputs),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "raw": raw,
        "variants": {},
    }
    for text, config in configs.items():
        started = time.perf_counter()
        method = create_method("distil", replace(params.train, distil=config)).fit(sets, seed=seeds[0])
        fit_seconds = time.perf_counter() - started
        row = {
            "config": {f.name: getattr(config, f.name) for f in fields(config)},
            "fit_seconds": round(fit_seconds, 1),
        }
        for task, spec in TASK_SPECS.items():
            runs = scored(task, method.transform(sets[spec.set_name]), seeds, inputs)
            value = ensemble_value(task, [r["items"] for r in runs])
            seed_mean = float(np.mean([r["value"] for r in runs]))
            row[task] = {
                "ensemble": value,
                "ensemble_drop": (raw[task]["ensemble"] - value) / raw[task]["ensemble"],
                "seed_mean_drop": (raw[task]["seed_mean"] - seed_mean) / raw[task]["seed_mean"],
                "inputs": [r["inputs"] for r in runs],
            }
        result["variants"][text] = row
        print(
            f"{text} (fit {fit_seconds:.0f}s): "
            + ", ".join(
                f"{t} {row[t]['ensemble_drop']:+.2%} (seed mean {row[t]['seed_mean_drop']:+.2%})" for t in TASK_SPECS
            ),
            flush=True,
        )
    print(f"wrote {write_result(result, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
