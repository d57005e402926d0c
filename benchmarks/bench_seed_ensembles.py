"""Do more seeds narrow the paired utility intervals, or only more test videos?

The utility drop of a method is measured on the seed ensemble (its heads' and raw's outputs
averaged over the evaluation seeds) with a bootstrap over the test videos. This re-scores a
finished evaluate run's saved per-video items (reports/evaluate/items) with ensembles of 1, 2,
..., S of its seeds (every combination, half-widths averaged) on the same resamples, and prints
each method's half-width per ensemble size beside half-width x sqrt(test videos): the constant
that says how many test videos a target half-width needs. Nothing is fitted or written in the
workdir.

    python benchmarks/bench_seed_ensembles.py [--workdir .] [--resamples 300]
Writes benchmarks/results/seed_ensembles.json.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np

from bench_pipeline import write_result

RESULTS = Path(__file__).resolve().parent / "results" / "seed_ensembles.json"
UTILITY_TARGET = 0.025


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=".")
    parser.add_argument("--resamples", type=int, default=300)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    from latentanon.evaluation import resampling
    from latentanon.evaluation.items import load_items
    from latentanon.evaluation.paired import count_test_videos, ensemble_drop
    from latentanon.tasks.per_item import ensemble_items

    folder = Path(args.workdir) / "reports" / "evaluate" / "items"
    files = sorted(folder.glob("*__*.npz"))
    if not files:
        print(f"{folder}: no saved items; run the evaluate stage first", file=sys.stderr)
        return 2
    pairs = [f.stem.split("__") for f in files]
    seeds = sorted({s for _, s in pairs}, key=int)
    methods = sorted({m for m, _ in pairs})
    items = {m: {s: load_items(folder / f"{m}__{s}.npz") for s in seeds} for m in methods}
    rows = []
    for task in items["raw"][seeds[0]]["utility"]:
        n_videos = count_test_videos(task, items["raw"][seeds[0]]["utility"][task])
        weights = resampling.shared_weights(n_videos, args.resamples)
        for method in (m for m in methods if m != "raw"):
            widths = []
            for size in range(1, len(seeds) + 1):
                per_combination = []
                for chosen in itertools.combinations(seeds, size):
                    raw = ensemble_items(task, [items["raw"][s]["utility"][task] for s in chosen], "raw")
                    other = ensemble_items(task, [items[method][s]["utility"][task] for s in chosen], method)
                    per_combination.append(ensemble_drop(task, raw, other, weights, 0.95)["half_width"])
                widths.append(float(np.mean(per_combination)))
            constant = widths[-1] * math.sqrt(n_videos)
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "test_videos": n_videos,
                    "half_width_by_seeds": widths,
                    "half_width_times_sqrt_videos": constant,
                    "videos_for_target": math.ceil((constant / UTILITY_TARGET) ** 2) if constant > 0 else 0,
                }
            )
            print(
                f"{task:>4} {method:>12} {n_videos:>5} videos  half-width with 1..{len(seeds)} seeds: "
                + " ".join(f"{w:.4f}" for w in widths)
                + f"  x sqrt(n) {constant:.2f} -> {rows[-1]['videos_for_target']} videos for {UTILITY_TARGET}"
            )
    result = {"seeds": seeds, "resamples": args.resamples, "utility_target": UTILITY_TARGET, "rows": rows}
    print(f"written {write_result(result, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
