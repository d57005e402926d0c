"""Cost of the evaluate stage's attack suite per (method, seed), at a chosen benchmark size.

Builds a labelled feature set with planted attribute directions (static and moving clips) of the
given size, then times each attacker of the grid, the whole validated attack (static and moving),
the paper's protocol, the feature-recovery attack, and one paired-bootstrap cMAP. Prints the
figures and writes them as JSON.

    python benchmarks/bench_attacks.py --identities 96 --videos 6 --dim 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from latentanon.evaluation import privacy, recovery, resampling
from latentanon.features.featureset import FeatureSet
from latentanon.tasks.private import ATTRIBUTES, attack_data

CLASSES = {"skin_tone": 4, "gender": 2, "clothing": 6, "face": 3}


def labelled_set(identities: int, videos: int, dim: int, seed: int = 0) -> FeatureSet:
    """Identities split half / quarter / quarter; static clips = attribute directions + noise,
    moving clips add an action direction."""
    rng = np.random.default_rng(seed)
    directions = {a: rng.standard_normal((k, dim)) for a, k in CLASSES.items()}
    actions = 2.0 * rng.standard_normal((8, dim))
    rows, static, clips = [], [], []
    for person in range(identities):
        split = "train" if person < identities // 2 else "val" if person < 3 * identities // 4 else "test"
        labels = {a: int(rng.integers(0, k)) for a, k in CLASSES.items()}
        look = sum(directions[a][c] for a, c in labels.items())
        for v in range(videos):
            rows.append({"video_id": f"{person}-{v}", "split": split, "identity": str(person), **labels})
            static.append((look + 2.0 * rng.standard_normal((4, dim))).astype(np.float32))
            clips.append(
                (0.5 * look + actions[rng.integers(0, 8)] + 2.0 * rng.standard_normal((5, dim))).astype(np.float32)
            )
    return FeatureSet("privacy_videos", pd.DataFrame(rows), {"static": static, "clips": clips})


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=96)
    parser.add_argument("--videos", type=int, default=6, help="videos per identity")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--out", default="benchmarks/results/attacks.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # as in the evaluate stage's workers
    fs = labelled_set(args.identities, args.videos, args.dim)
    splits = [fs.split(s) for s in ("train", "val", "test")]
    privacy.fit_attacker(
        attack_data(splits[0], ATTRIBUTES, "static"), dict(CLASSES), privacy.ATTACKER_GRID[0], 0
    )  # warm-up
    result = {
        "identities": args.identities,
        "videos_per_identity": args.videos,
        "dim": args.dim,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": 1,
        "seconds": {},
    }
    for kind in ("static", "clips"):
        train, val = attack_data(splits[0], ATTRIBUTES, kind), attack_data(splits[1], ATTRIBUTES, kind)
        per = {}
        for spec in privacy.ATTACKER_GRID:
            _, per[privacy.spec_label(spec)] = timed(lambda: privacy.fit_attacker(train, dict(CLASSES), spec, 0, val))
        full, per["validated attack (whole grid)"] = timed(lambda: privacy.attack(*splits, ATTRIBUTES, 0, kind))
        _, per["paper protocol"] = timed(
            lambda: privacy.paper_protocol_attack(splits[0], splits[2], ATTRIBUTES, 0, kind)
        )
        items = full["items"]
        weights = resampling.shared_weights(len(items["labels"]["gender"]), args.resamples)
        _, per[f"paired cMAP x{args.resamples}"] = timed(
            lambda: resampling.weighted_cmap(items["labels"], items["probabilities"], weights)
        )
        per["train clips"] = int(train.x.shape[0])
        result["seconds"][kind] = per
    rotated = fs.with_arrays({k: [a[:, ::-1].copy() for a in v] for k, v in fs.arrays.items()})
    _, result["seconds"]["recovery attack"] = timed(lambda: recovery.recovery_attack({"p": rotated}, {"p": fs}))
    for kind, per in result["seconds"].items():
        if isinstance(per, dict):
            for name, value in per.items():
                print(f"{kind:>7s}  {name:>34s}  {value}")
        else:
            print(f"{kind:>7s}  {per}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
