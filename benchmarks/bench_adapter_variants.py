"""Ablation: how much private-attribute leakage each adapter variant removes, on stored features.

Trains every variant on the train splits of an existing feature store (the one `make run` or
`latentanon extract` wrote), anonymizes the evaluation sets, and measures them exactly as the
evaluate stage does (attackers selected on val, scored on test; the same utility heads), for each
seed. Two linear projections are measured next to the adapters as diagnostics of where the
leakage lives; like the AAM they use no private labels.

    python benchmarks/bench_adapter_variants.py --workdir .          # after `make run`
    python benchmarks/bench_adapter_variants.py --variants paper critic --seeds 0 1

Prints a table and writes benchmarks/results/adapter_variants.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from latentanon._configtools import from_dict
from latentanon.config import Layout, load_params
from latentanon.evaluation import metrics
from latentanon.methods.config import TrainConfig

_STRONG = {"latent_consistency": 10.0, "utility": 1.0, "privacy": 10.0, "temperature": 0.1}
# name -> overrides of params.train (the AAM variants) or a projection diagnostic
VARIANTS: dict[str, dict] = {
    "paper": {},
    "low_consistency": {"weights": {"latent_consistency": 1.0, "utility": 1.0, "privacy": 1.0, "temperature": 0.1}},
    "strong_privacy": {"batch_size": 64, "lr": 3e-3, "weights": _STRONG},
    "moving_views": {"batch_size": 64, "lr": 3e-3, "weights": _STRONG, "privacy": {"views": "static+moving"}},
    "critic": {
        "batch_size": 64,
        "lr": 1e-3,
        "weights": {**_STRONG, "latent_consistency": 100.0},
        "privacy": {"critic": True},
    },
    "critic_moving": {
        "batch_size": 64,
        "lr": 1e-3,
        "weights": {**_STRONG, "latent_consistency": 100.0},
        "privacy": {"critic": True, "views": "static+moving"},
    },
    "projection:video_subspace_removed": {"projection": "video", "k": 32},
    "projection:action_subspace_kept": {"projection": "action", "k": 11},
}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _whitening(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(x.T) + 1e-6 * np.eye(x.shape[1]))
    return mean, vectors @ np.diag(values**-0.5) @ vectors.T, vectors @ np.diag(values**0.5) @ vectors.T


def projection(kind: str, k: int, training_sets: dict) -> tuple[np.ndarray, np.ndarray]:
    """(mean, T): features map to mean + (x - mean) @ T, fitted on train splits only.

    "video": remove the k whitened directions that most separate videos in static clips (what
    L_B targets); "action": keep only the k whitened directions that most separate action classes.
    """
    if kind == "video":
        static = [np.asarray(s, np.float64) for fs in training_sets.values() for s in fs.split("train").kind("static")]
        mean, whiten, unwhiten = _whitening(np.concatenate(static))
        centres = np.array([(s.mean(axis=0) - mean) @ whiten for s in static if len(s) >= 2])
        _, vectors = np.linalg.eigh(np.cov(centres.T))
        top = vectors[:, ::-1][:, :k]
        return mean, whiten @ (np.eye(len(mean)) - top @ top.T) @ unwhiten
    actions = training_sets["actions"].split("train")
    clips = [np.asarray(c, np.float64) for c in actions.kind("clips")]
    x = np.concatenate(clips)
    labels = np.concatenate([np.full(len(c), label) for c, label in zip(clips, actions.records["label_id"])])
    mean, whiten, unwhiten = _whitening(x)
    z = (x - mean) @ whiten
    centres = np.array([z[labels == c].mean(axis=0) for c in np.unique(labels)])
    _, vectors = np.linalg.eigh(np.cov(centres.T))
    top = vectors[:, ::-1][:, :k]
    return mean, whiten @ top @ top.T @ unwhiten


def transformed_sets(name: str, spec: dict, base_train: dict, training_sets: dict, raw: dict) -> tuple[dict, dict]:
    from latentanon.methods.apply import anonymize_feature_set
    from latentanon.methods.training import fit_adapter

    if "projection" in spec:
        mean, transform = projection(spec["projection"], spec["k"], training_sets)

        def apply(a):
            a = np.asarray(a, np.float32)
            return ((a - mean) @ transform + mean).astype(np.float32) if a.size else a

        return {
            n: fs.with_arrays({kind: [apply(a) for a in items] for kind, items in fs.arrays.items()})
            for n, fs in raw.items()
        }, {}
    cfg = from_dict(TrainConfig, {**base_train, **spec, "use_tuned_weights": False}, f"variant {name}")
    model, history = fit_adapter(training_sets, cfg, cfg.weights, cfg.epochs, cfg.seed)
    info = {"best_epoch": history["best_epoch"], "train_seconds": round(history["seconds"], 1)}
    if "diverged_at_epoch" in history:
        info["diverged_at_epoch"] = history["diverged_at_epoch"]
    return {n: anonymize_feature_set(model, fs) for n, fs in raw.items()}, info


def compare(raw_runs: list[dict], runs: list[dict], confidence: float) -> dict:
    """Normalised leakage (static, moving), re-identification and utility drops, mean and interval."""
    out = {}
    for scope in ("static", "moving"):
        out[f"{scope}_normalized_leakage"] = metrics.mean_interval(
            [
                metrics.normalized_leakage(
                    r["privacy"][scope]["cmap"], r["privacy"][scope]["chance"], b["privacy"][scope]["cmap"]
                )
                for b, r in zip(raw_runs, runs)
            ],
            confidence,
        )
        out[f"{scope}_cmap"] = metrics.mean_interval([r["privacy"][scope]["cmap"] for r in runs], confidence)
    out["reid_top1"] = metrics.mean_interval([r["privacy"]["reid"]["top1"] for r in runs], confidence)
    out["utility_relative_drop"] = {
        task: metrics.mean_interval(
            [
                metrics.relative_drop(b["utility"][task]["value"], r["utility"][task]["value"])
                for b, r in zip(raw_runs, runs)
            ],
            confidence,
        )
        for task in raw_runs[0]["utility"]
    }
    return out


def markdown_table(result: dict) -> str:
    """The measured variants as a markdown table (mean and interval over seeds)."""

    def cell(block: dict) -> str:
        return f"{block['mean']:.2f} [{block['low']:.2f}, {block['high']:.2f}]"

    from latentanon.tasks.specs import TASKS

    measured = next(iter(result["variants"].values()))["utility_relative_drop"] if result["variants"] else {}
    tasks = [t for t in TASKS if t in measured]
    lines = [
        "| variant | normalised leakage, static | normalised leakage, moving | "
        + " | ".join(f"{t.upper()} relative drop" for t in tasks)
        + " |",
        "|---|---|---|" + "---|" * len(tasks),
    ]
    names = [n for n in VARIANTS if n in result["variants"]] + sorted(set(result["variants"]) - set(VARIANTS))
    for name in names:
        row = result["variants"][name]
        drops = [f"{row['utility_relative_drop'][t]['mean']:+.1%}" for t in tasks]
        lines.append(
            f"| {name} | {cell(row['static_normalized_leakage'])} | {cell(row['moving_normalized_leakage'])} | "
            + " | ".join(drops)
            + " |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--workdir", default=None, help="paths.workdir override (where the feature store is)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: evaluate.seeds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/adapter_variants.json")
    args = parser.parse_args()

    from latentanon.evaluation.measure import load_sets, measure, needed_sets
    from latentanon.methods.training import load_training_sets

    params = load_params(args.params, [f"paths.workdir={args.workdir}"] if args.workdir else [])
    layout = Layout.from_params(params)
    seeds = args.seeds or list(params.evaluate.seeds)
    confidence = params.evaluate.confidence
    training_sets = load_training_sets(layout.features_uri)
    raw = load_sets(layout.features_uri, needed_sets())
    base_train = asdict(params.train)
    from latentanon.features.store import FeatureStore

    index = FeatureStore(layout.features_uri).read_index()
    result = {
        # what was measured, without the store's location (a machine path)
        "encoder": (index.get("meta") or {}).get("encoder", {}).get("identity"),
        "videos": {name: entry.get("videos") for name, entry in index["sets"].items()},
        "seeds": seeds,
        "confidence": confidence,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "variants": {},
    }
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_init_worker) as pool:
        raw_runs = list(pool.map(measure, [raw] * len(seeds), seeds))
        result["raw"] = {
            scope: metrics.mean_interval([r["privacy"][scope]["cmap"] for r in raw_runs], confidence)
            for scope in ("static", "moving")
        }
        result["raw"]["chance"] = raw_runs[0]["privacy"]["static"]["chance"]
        for name in tqdm(args.variants, desc="adapter variants", unit="variant"):
            sets, info = transformed_sets(name, VARIANTS[name], base_train, training_sets, raw)
            runs = list(pool.map(measure, [sets] * len(seeds), seeds))
            result["variants"][name] = {"overrides": VARIANTS[name], **info, **compare(raw_runs, runs, confidence)}
            row = result["variants"][name]
            drops = " ".join(f"{t} {v['mean']:+.3f}" for t, v in row["utility_relative_drop"].items())
            tqdm.write(
                f"{name:>36s}  NL static {row['static_normalized_leakage']['mean']:.2f} "
                f"moving {row['moving_normalized_leakage']['mean']:.2f}  drops {drops}"
            )
    result["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(markdown_table(result))
    print(f"wrote {out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
