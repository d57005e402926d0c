"""Per-stage wall-clock times of the main job.

Either times a fresh run of every stage (`--run`, in order, each in its own process like DVC
does) or reads the times the last `dvc repro` left in reports/<stage>/summary.json.

    python benchmarks/bench_pipeline.py --run --params params.yaml --workdir /tmp/bench
    python benchmarks/bench_pipeline.py            # after `make run`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from latentanon.config import Layout, load_params
from latentanon.stages import PIPELINE


def run_stages(params_file: str, overrides: list[str]) -> dict[str, float]:
    wall = {}
    cli = [sys.executable, "-m", "latentanon"]
    for stage in PIPELINE:
        args = [a for o in overrides for a in ("--set", o)]
        t0 = time.perf_counter()
        subprocess.run([*cli, stage, "--params", params_file, *args], check=True)
        wall[stage] = round(time.perf_counter() - t0, 2)
        print(f"{stage:>18s}  {wall[stage]:8.1f} s", flush=True)
    return wall


def recorded_times(layout: Layout) -> dict[str, float]:
    times = {}
    for stage in PIPELINE:
        summary = layout.report_dir(stage) / "summary.json"
        if summary.exists():
            times[stage] = float(json.loads(summary.read_text()).get("seconds", float("nan")))
    return times


def write_result(result: dict, path: str | Path) -> Path:
    """A benchmark's figures as indented JSON at ``path`` (folders made)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--workdir", default=None, help="paths.workdir override for --run")
    parser.add_argument("--run", action="store_true", help="run every stage now instead of reading summaries")
    parser.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = parser.parse_args()

    overrides = [f"paths.workdir={args.workdir}"] if args.workdir else []
    layout = Layout.from_params(load_params(args.params, overrides))
    result = {
        "params": args.params,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    if args.run:
        result["wall_seconds_with_process_start"] = run_stages(args.params, overrides)
    result["stage_seconds"] = recorded_times(layout)
    result["total_seconds"] = round(sum(result["stage_seconds"].values()), 1)
    for stage, seconds in result["stage_seconds"].items():
        print(f"{stage:>18s}  {seconds:8.1f} s (in-stage)")
    print(f"{'total':>18s}  {result['total_seconds']:8.1f} s")
    print(f"written {write_result(result, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
