"""evaluation.metrics.average_precision against sklearn's average_precision_score, side by side.

Evaluation calls AP once per class, attacker and scope: thousands of times per run on test sets
of a few hundred items, where sklearn's input validation costs more than the arithmetic. Both
are timed in one process on the same inputs, and their results compared bit for bit.

    python benchmarks/bench_average_precision.py [--calls 2000]
Writes benchmarks/results/average_precision.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (50, 200, 1000, 10000)


def per_call_ms(function, labels, scores, calls: int) -> float:
    best = float("inf")
    for _ in range(3):  # best of three: the least disturbed by other work on the machine
        start = time.perf_counter()
        for _ in range(calls):
            function(labels, scores)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1000


def main() -> None:
    from sklearn.metrics import average_precision_score

    from latentanon.evaluation.metrics import average_precision

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for size in SIZES:
        labels = rng.random(size) < 0.3
        scores = rng.random(size)
        if average_precision(labels, scores) != float(average_precision_score(labels, scores)):
            raise SystemExit(f"n={size}: the two APs differ")
        calls = max(20, args.calls * 200 // size)
        ours = per_call_ms(average_precision, labels, scores, calls)
        theirs = per_call_ms(average_precision_score, labels, scores, calls)
        rows.append({"items": size, "sklearn_ms": theirs, "latentanon_ms": ours, "speedup": theirs / ours})
        print(f"n={size:>6}: sklearn {theirs:.3f} ms, latentanon {ours:.3f} ms, x{theirs / ours:.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "average_precision.json"
    out.write_text(json.dumps({"machine": platform.machine(), "identical": True, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
