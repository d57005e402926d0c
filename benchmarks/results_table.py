"""Write the README's results table from the run that produced it.

    python benchmarks/results_table.py                      # print the table from reports/metrics.json
    python benchmarks/results_table.py --readme README.md   # also rewrite the README's marked block

Every figure comes from reports/metrics.json (means over seeds with their intervals); nothing is
typed by hand, so the README cannot drift from the run it quotes. The table also lands in
benchmarks/results/results_table.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from latentanon.evaluation.report import replace_results_block, results_table

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", default="reports/metrics.json", help="the audit_bias stage's metrics tree")
    parser.add_argument("--readme", default=None, help="a markdown file with the results-table markers to rewrite")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "results_table.md"),
                        help="where the table is also written")
    args = parser.parse_args(argv)
    metrics = Path(args.metrics)
    if not metrics.exists():
        print(f"{metrics}: no metrics file; run the pipeline first (make run)", file=sys.stderr)
        return 2
    try:
        tree = json.loads(metrics.read_text())
    except json.JSONDecodeError as exc:
        print(f"{metrics}: not valid JSON: {exc}", file=sys.stderr)
        return 2
    table = results_table(tree)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table, end="")
    if args.readme:
        readme = Path(args.readme)
        try:
            readme.write_text(replace_results_block(readme.read_text(), table))
        except ValueError as exc:
            print(f"{readme}: {exc}", file=sys.stderr)
            return 2
        print(f"[results_table] rewrote the results block of {readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
