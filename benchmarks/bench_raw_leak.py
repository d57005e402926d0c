"""How much the raw (not anonymized) features leak, and how well they still recognise actions.

Reads a feature store written by the extract stage and measures, on its test split:
- static-clip attribute leakage: the evaluation's own attackers (linear and MLP, chosen per
  attribute on val, trained on train) on the static clips of privacy_videos + privacy_images;
  per attribute mAP next to its chance, and the cMAP over every class of every attribute;
- moving-clip leakage the same way on privacy_videos clips;
- the action probe: a standardised logistic regression on single actions clips (train split),
  softmax averaged over each test video's clips, as the pretrain_encoder stage's probe does.
Also records the data sizes (videos and identities per split) the figures come from.
Writes benchmarks/results/raw_leak.json.

    python benchmarks/bench_raw_leak.py [--features features] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from latentanon.encoders.probe import action_probe
from latentanon.evaluation.privacy import ATTRIBUTES, attack
from latentanon.features.store import list_feature_sets, load_feature_set

RESULTS = Path(__file__).resolve().parent / "results"
PRIVACY_SETS = ("privacy_videos", "privacy_images")


def leakage(sets: list, kind: str, seed: int) -> dict:
    result = attack(*([fs.split(s) for fs in sets] for s in ("train", "val", "test")), ATTRIBUTES, seed, kind)
    per_attribute = {
        a: {"map": r["map"], "chance": r["chance"], "margin": r["map"] - r["chance"], "attacker": r["attacker"]["name"]}
        for a, r in result["attributes"].items()
    }
    return {
        "cmap": result["cmap"],
        "chance": result["chance"],
        "margin": result["cmap"] - result["chance"],
        "attributes": per_attribute,
        "test_videos": result["n_test_videos"],
    }


def sizes(fs) -> dict:
    out = {}
    for split in ("train", "val", "test"):
        part = fs.records[fs.records["split"] == split]
        out[split] = {"videos": int(len(part)), "identities": int(part["identity"].nunique())}
    return out


def mean_over_seeds(runs: list[dict]) -> dict:
    """Seed-averaged figures (attacker initialisation differs per seed), with their spread."""
    out = {
        "cmap": float(np.mean([r["cmap"] for r in runs])),
        "chance": runs[0]["chance"],
        "cmap_seed_std": float(np.std([r["cmap"] for r in runs])),
    }
    out["margin"] = out["cmap"] - out["chance"]
    out["attributes"] = {
        a: {
            "map": float(np.mean([r["attributes"][a]["map"] for r in runs])),
            "chance": runs[0]["attributes"][a]["chance"],
            "attackers": [r["attributes"][a]["attacker"] for r in runs],
        }
        for a in runs[0]["attributes"]
    }
    for a in out["attributes"].values():
        a["margin"] = a["map"] - a["chance"]
    out["test_videos"] = runs[0]["test_videos"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default="features", help="feature store written by the extract stage")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(RESULTS / "raw_leak.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    available = set(list_feature_sets(args.features))
    privacy = [load_feature_set(args.features, n) for n in PRIVACY_SETS if n in available]
    actions = load_feature_set(args.features, "actions")
    static = mean_over_seeds([leakage(privacy, "static", s) for s in args.seeds])
    moving = mean_over_seeds(
        [leakage([fs for fs in privacy if fs.name == "privacy_videos"], "clips", s) for s in args.seeds]
    )
    train, test = actions.split("train"), actions.split("test")
    probe = action_probe(
        train.kind("clips"),
        train.records["label_id"].to_numpy(),
        test.kind("clips"),
        test.records["label_id"].to_numpy(),
        seed=0,
    )
    result = {
        "features": args.features,
        "encoder": actions.meta.get("encoder"),
        "seeds": args.seeds,
        "static": static,
        "moving": moving,
        "action_probe": {
            "top1": probe["top1"],
            "chance_top1": probe["chance_top1"],
            "classes": probe["classes"],
            "test_videos": probe["test_videos"],
        },
        "sizes": {fs.name: sizes(fs) for fs in [*privacy, actions]},
        "feature_dim": actions.dim,
        "seconds": round(time.perf_counter() - t0, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(
        f"raw static-clip leakage (test): cMAP {static['cmap']:.3f} vs chance {static['chance']:.3f} "
        f"(margin {static['margin']:+.3f}, seed std {static['cmap_seed_std']:.3f})"
    )
    for a, r in static["attributes"].items():
        print(f"  {a:10s} mAP {r['map']:.3f} / chance {r['chance']:.3f} (margin {r['margin']:+.3f})")
    print(f"raw moving-clip leakage (test): cMAP {moving['cmap']:.3f} vs chance {moving['chance']:.3f}")
    for a, r in moving["attributes"].items():
        print(f"  {a:10s} mAP {r['map']:.3f} / chance {r['chance']:.3f}")
    print(
        f"action probe: top-1 {probe['top1']:.3f} (chance {probe['chance_top1']:.3f}, "
        f"{probe['test_videos']} test videos)"
    )
    for name, s in result["sizes"].items():
        print(f"  {name}: " + ", ".join(f"{k} {v['videos']} videos / {v['identities']} ids" for k, v in s.items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
