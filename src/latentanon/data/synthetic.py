"""The synthetic privacy-video benchmark, written as real files in the real datasets' layouts.

generate_benchmark plans every video from cfg.seed (who, what, where, which split), writes the
annotation files of each layout, then renders the videos (skipping those already written, so an
interrupted run resumes), and finally draws a contact sheet per set. docs/datasets.md documents
the layouts and the split rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np
from tqdm import tqdm

from latentanon._files import write_text_atomic
from latentanon.data import layouts
from latentanon.data.actions import ACTIONS, ANOMALIES, PAIRS
from latentanon.data.actors import ATTRIBUTES
from latentanon.data.cast import make_cast
from latentanon.data.config import TEST_MULTIPLIERS, DataConfig
from latentanon.data.contact import write_contact_sheets
from latentanon.data.job_frames import render_job
from latentanon.data.jobs import Job
from latentanon.data.timeline_plans import plan_anomaly, plan_untrimmed
from latentanon.data.trimmed_plans import (
    plan_actions,
    plan_bias,
    plan_pretrain,
    plan_privacy_images,
    plan_privacy_videos,
)
from latentanon.data.video_io import write_image, write_video
from latentanon.errors import DataError

ANOMALY_CLASSES = ("Normal",) + ANOMALIES
GENERATOR_VERSION = "latentanon.synthetic/3"  # bump when the same settings would give other files


# ----------------------------------------------------------------------------- planning


def _check_config(cfg: DataConfig) -> None:
    problems = []
    if min(cfg.n_identities_train, cfg.n_identities_val, cfg.n_identities_test) < 1:
        problems.append("n_identities_train/val/test must each be >= 1")
    if cfg.n_identities_train + cfg.n_identities_val + cfg.n_identities_test > 99:
        problems.append("at most 99 identities (UCF101 group ids have two digits)")
    if min(getattr(cfg, name) for name in TEST_MULTIPLIERS) < 1:
        problems.append(f"{', '.join(TEST_MULTIPLIERS)} must each be >= 1")
    if cfg.n_identities_pretrain < 2:
        problems.append("n_identities_pretrain must be >= 2")
    if cfg.height < 16 or cfg.width < 16 or cfg.height % 2 or cfg.width % 2:
        problems.append("height and width must be even and >= 16")
    if cfg.trimmed_frames < cfg.clip_frames or cfg.untrimmed_frames < 4 * cfg.clip_frames:
        problems.append("trimmed_frames >= clip_frames and untrimmed_frames >= 4 * clip_frames")
    if cfg.fps < 1:
        problems.append("fps must be >= 1")
    if cfg.workers < 1:
        problems.append("workers must be >= 1")
    if cfg.scenes < 0:
        problems.append("scenes must be >= 0 (0: a new scene per video)")
    if problems:
        raise DataError("data config: " + "; ".join(problems))


PLANNERS = {
    "pretrain": plan_pretrain,
    "actions": plan_actions,
    "privacy_videos": plan_privacy_videos,
    "privacy_images": plan_privacy_images,
    "untrimmed": plan_untrimmed,
    "anomaly": plan_anomaly,
    "bias": plan_bias,
}


def plan_benchmark(cfg: DataConfig) -> tuple[list[Job], dict[str, str]]:
    """Every job and annotation file, deterministically from cfg.seed."""
    _check_config(cfg)
    cast = make_cast(cfg)
    jobs, files = [], {}
    for index, set_name in enumerate(layouts.SETS):
        set_jobs, set_files = PLANNERS[set_name](cfg, cast, np.random.default_rng([cfg.seed, index, 1]))
        for k, job in enumerate(set_jobs):
            job.seed = (cfg.seed, index, 2, k)
        jobs += set_jobs
        files.update(set_files)
    files[layouts.CLASSES_FILE] = json.dumps(class_lists(), indent=2) + "\n"
    return jobs, files


def class_lists() -> dict:
    """classes.json: action classes, the paired classes, attribute names, each set's label order."""
    return {
        "actions": list(ACTIONS),
        "pairs": [list(p) for p in PAIRS],
        "anomaly": list(ANOMALY_CLASSES),
        "attributes": {k: list(v) for k, v in ATTRIBUTES.items()},
        "sets": {
            "pretrain": list(ACTIONS),
            "actions": list(ACTIONS),
            "privacy_videos": list(ACTIONS),
            "privacy_images": [],
            "untrimmed": list(ACTIONS),
            "anomaly": list(ANOMALY_CLASSES),
            "bias": list(ACTIONS),
        },
    }


# ----------------------------------------------------------------------------- writing


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    write_text_atomic(path, text)


# Settings added after generator version 3 that change nothing at 1: left out of the stamp there,
# so that a benchmark generated before they existed is still recognised as the same one.
NEUTRAL_AT_ONE = TEST_MULTIPLIERS


def _config_stamp(cfg: DataConfig) -> dict:
    # where it is written and how many processes write it do not change the content
    settings = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("root", "workers") and not (k in NEUTRAL_AT_ONE and v == 1)
    }
    blob = json.dumps({"generator": GENERATOR_VERSION, **settings}, sort_keys=True)
    return {
        "generator": GENERATOR_VERSION,
        "config": settings,
        "config_hash": hashlib.sha256(blob.encode()).hexdigest()[:16],
    }


def _claim_root(root: Path, cfg: DataConfig) -> None:
    """Refuse to mix files generated with other settings into the same root."""
    stamp = _config_stamp(cfg)
    path = root / layouts.STAMP_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: unreadable generation stamp ({exc}); delete the benchmark folder") from exc
        if old.get("config_hash") != stamp["config_hash"]:
            raise DataError(
                f"{path}: this folder holds a benchmark generated with other data settings "
                f"({old.get('config_hash')} != {stamp['config_hash']}); delete it or choose another data.root"
            )
    elif root.exists() and any(root.iterdir()):
        raise DataError(f"{root}: folder is not empty and holds no generated benchmark; choose another data.root")
    _atomic_text(path, json.dumps(stamp, indent=2, sort_keys=True) + "\n")


def _render_and_write(job: Job, cfg: DataConfig, root: Path) -> str:
    """Render one planned file and write it atomically (runs in worker processes too)."""
    frames = render_job(job, cfg)
    out = root / job.path
    if job.kind == "image":
        write_image(out, frames)
    else:
        write_video(out, frames, cfg.fps, cfg.codec)
    return job.path


def generate_benchmark(cfg: DataConfig, root: Path, report_dir: Path) -> dict:
    """Write the whole benchmark under root; contact sheets and summary.json under report_dir."""
    t0 = time.perf_counter()
    root, report_dir = Path(root), Path(report_dir)
    jobs, files = plan_benchmark(cfg)
    root.mkdir(parents=True, exist_ok=True)
    _claim_root(root, cfg)
    for rel, text in files.items():
        _atomic_text(root / rel, text)
    todo = [job for job in jobs if not (root / job.path).exists()]
    skipped = len(jobs) - len(todo)
    if cfg.workers > 1 and len(todo) > 1:
        # fork where the platform has it: spawn would re-import an unguarded __main__ module
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context(method)) as pool:
            # map submits every chunk (starting the workers) before the progress bar's thread exists
            done = pool.map(_render_and_write, todo, repeat(cfg), repeat(root), chunksize=8)
            for _ in tqdm(done, total=len(todo), desc="generate", unit="video", disable=None):
                pass
    else:
        for job in tqdm(todo, desc="generate", unit="video", disable=None):
            _render_and_write(job, cfg, root)
    rendered = len(todo)
    seconds_render = time.perf_counter() - t0
    sheets = write_contact_sheets(jobs, root, report_dir)
    counts = {s: sum(j.set_name == s for j in jobs) for s in layouts.SETS}
    frames = {s: sum(1 if j.kind == "image" else j.n_frames for j in jobs if j.set_name == s) for s in layouts.SETS}
    size = sum((root / j.path).stat().st_size for j in jobs)
    summary = {
        "root": str(root),
        "videos": counts,
        "frames": frames,
        "total_files": len(jobs),
        "rendered": rendered,
        "skipped_existing": skipped,
        "bytes": size,
        "seconds_generate": round(seconds_render, 2),
        "workers": cfg.workers,
        "seconds": round(time.perf_counter() - t0, 2),
        "contact_sheets": [str(p) for p in sheets],
        "config_hash": _config_stamp(cfg)["config_hash"],
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    _atomic_text(report_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
