"""Time lost to a kill: each resumable stage killed (SIGKILL) halfway through, then run again.

In a workdir where the smoke pipeline has run (`latentanon run --params params.smoke.yaml`, or
this script's --prepare), for each stage: delete its outputs and time an uninterrupted run (T);
delete them again, start it, kill it at T/2, and time the re-run (R). The time lost to the kill
is R - (T - T/2): the part of the work done before the kill that the re-run did again (start-up
and reloading included). The same is computed from CPU seconds (user + system of the stage
process), which a busy shared machine disturbs far less than wall time. Pass --src to measure
another checkout's code (e.g. before a change).

    python benchmarks/bench_resume.py --workdir /tmp/resume-bench --prepare
    python benchmarks/bench_resume.py --workdir /tmp/resume-bench --label before --src /tmp/old/src

Prints a table and writes benchmarks/results/resume_<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = {  # stage -> the outputs deleted before each run (persisted ones included)
    "pretrain-encoder": ["models/encoder", "reports/pretrain_encoder"],
    "extract": ["features", "reports/extract"],
    "tune": ["reports/tune"],
    "train": ["models/method", "features_anon", "reports/train"],
    "evaluate": ["reports/evaluate"],
}
ORDER = ("generate", "validate", "pretrain-encoder", "extract", "tune", "train", "evaluate", "audit-bias")


OVERRIDES: list[str] = []  # --set, for every command


def command(stage: str, src: str | None) -> list[str]:
    prefix = f"import sys; sys.path.insert(0, {src!r}); " if src else ""
    sets = [arg for override in OVERRIDES for arg in ("--set", override)]
    return [
        sys.executable,
        "-c",
        f"{prefix}from latentanon.cli import main; raise SystemExit(main())",
        stage,
        "--params",
        "params.yaml",
        "--no-tracking",
        *sets,
    ]


def clear(workdir: Path, stage: str) -> None:
    for name in STAGES[stage]:
        shutil.rmtree(workdir / name, ignore_errors=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(workdir: Path, stage: str, src: str | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one uninterrupted run."""
    t0, cpu0 = time.perf_counter(), children_cpu()
    subprocess.run(command(stage, src), cwd=workdir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, children_cpu() - cpu0


def killed_run(workdir: Path, stage: str, src: str | None, after: float) -> tuple[bool, float]:
    """Run ``stage``, SIGKILL it after ``after`` seconds: (killed, CPU seconds it used)."""
    cpu0 = children_cpu()
    proc = subprocess.Popen(
        command(stage, src), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        proc.wait(timeout=after)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = True
    return killed, children_cpu() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--prepare", action="store_true", help="run the whole smoke pipeline there first")
    parser.add_argument("--src", default=None, help="a src/ directory whose latentanon to measure")
    parser.add_argument("--params", default=str(ROOT / "params.smoke.yaml"), help="profile copied by --prepare")
    parser.add_argument("--label", default="after")
    parser.add_argument("--stages", nargs="*", default=list(STAGES))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="param override, as the CLI's")
    args = parser.parse_args()
    OVERRIDES.extend(args.overrides)
    workdir = args.workdir.resolve()
    if args.prepare:
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.params, workdir / "params.yaml")
        for stage in ORDER:
            subprocess.run(command(stage, args.src), cwd=workdir, check=True)
    rows = {}
    for stage in args.stages:
        clear(workdir, stage)
        total, total_cpu = timed_run(workdir, stage, args.src)
        clear(workdir, stage)
        kill_at = total / 2
        killed, done_cpu = killed_run(workdir, stage, args.src, kill_at)
        rerun, rerun_cpu = timed_run(workdir, stage, args.src)
        lost, lost_cpu = rerun - (total - kill_at), rerun_cpu - (total_cpu - done_cpu)
        rows[stage] = {
            "uninterrupted_s": round(total, 2),
            "killed_at_s": round(kill_at, 2),
            "killed": killed,
            "rerun_s": round(rerun, 2),
            "lost_s": round(lost, 2),
            "uninterrupted_cpu_s": round(total_cpu, 2),
            "cpu_before_kill_s": round(done_cpu, 2),
            "rerun_cpu_s": round(rerun_cpu, 2),
            "lost_cpu_s": round(lost_cpu, 2),
            "lost_cpu_share_of_done": round(lost_cpu / done_cpu, 3) if done_cpu > 0 else None,
        }
        print(
            f"{stage:17s} wall: T {total:6.1f}  kill {kill_at:6.1f}  re-run {rerun:6.1f}  lost {lost:6.1f} s | "
            f"CPU: T {total_cpu:6.1f}  before kill {done_cpu:6.1f}  re-run {rerun_cpu:6.1f}  "
            f"lost {lost_cpu:6.1f} s ({100 * lost_cpu / max(done_cpu, 1e-9):.0f}% of the CPU work before the kill)",
            flush=True,
        )
    out = ROOT / "benchmarks" / "results" / f"resume_{args.label}.json"
    out.write_text(
        json.dumps(
            {
                "label": args.label,
                "profile": Path(args.params).name,
                "stages": rows,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "overrides": args.overrides,
                "note": "lost = rerun - (uninterrupted - done before the kill), in wall and in "
                "CPU seconds; wall time is from a shared, busy machine",
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
