"""Privacy in every scope a user shares, and the utility it costs, for candidate methods.

On an extracted feature store (the main job's ``features/``), each candidate is fitted on the
train rows (selection on val, as the train stage fits it) and attacked with the evaluation's own
attackers (``latentanon.evaluation.privacy.attack``: linear and MLP, standardised and whitened,
chosen per attribute on val, scored once on test), in each scope:

- ``static``: single static clips of the privacy sets (per clip, softmax averaged per video);
- ``moving``: single moving clips of the privacy videos;
- ``video_mean``: each privacy video's mean moving clip (the attacker trains and scores on means);
- ``untrimmed_mean`` / ``anomaly_mean``: each long video's mean snippet, where its records carry
  the private attributes;
- ``release_R``: the privacy videos published R times through the method's publish transform
  (fresh OS noise for a stochastic method), averaged per clip, attacked per clip.

Each scope's normalised leakage (cMAP - chance) / (raw cMAP - chance) has a paired bootstrap
interval over the test videos (raw and method on the same resamples). The ``floor`` candidate is
the attacker on the raw features' strongest seen-task heads' posteriors. Utility: the paired
relative drop of each task with the project's head protocol (``score_task`` with every head input
form, the stronger chosen on val), and the unseen drops (each task held out of the method's fit in
turn, then scored on its code).

    python benchmarks/bench_scopes.py --features features --candidates floor distil bottleneck
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import write_result

PRIVACY_SETS = ("privacy_videos", "privacy_images")
MOVING_SET = "privacy_videos"
LONG_SETS = {"untrimmed_mean": "untrimmed", "anomaly_mean": "anomaly"}
SPLITS = ("train", "val", "test")


def candidates(train) -> dict:
    """Candidate name -> (registry name, train config). ``train`` is params.yaml's train section."""
    from latentanon.methods.config import DistilConfig, FisherConfig

    bottleneck = replace(train.bottleneck, sigma=0.87, compaction=0.14, static_compaction=0.14)
    return {
        "identity": ("identity", train),
        "floor": (
            "distil",
            replace(train, distil=DistilConfig(outputs="posteriors", step=0.0, ad_logit=False, per_kind=False)),
        ),
        "distil": (
            "distil",
            replace(train, distil=DistilConfig(outputs="logits", step=0.0, ad_logit=False, per_kind=False)),
        ),
        **{
            f"distil_posteriors_t{t:g}": (
                "distil",
                replace(
                    train,
                    distil=DistilConfig(outputs="posteriors", temperature=t, step=0.0, ad_logit=False, per_kind=False),
                ),
            )
            for t in (0.5, 0.25, 0.1, 2.0)
        },
        **{
            f"distil_posteriors_t{t:g}_step{q:g}": (
                "distil",
                replace(
                    train,
                    distil=DistilConfig(outputs="posteriors", temperature=t, step=q, ad_logit=False, per_kind=False),
                ),
            )
            for t in (1.0, 0.5)
            for q in (0.1, 0.25)
        },
        **{
            f"distil_posteriors_step{q:g}_ad_logit": (
                "distil",
                replace(train, distil=DistilConfig(outputs="posteriors", step=q, ad_logit=True, per_kind=False)),
            )
            for q in (0.1, 0.25)
        },
        **{
            f"distil_posteriors_step{q:g}_ad_step{a:g}": (
                "distil",
                replace(
                    train, distil=DistilConfig(outputs="posteriors", step=q, ad_logit=True, ad_step=a, per_kind=False)
                ),
            )
            for q in (0.5, 0.35, 0.25)
            for a in (0.0, 0.1, 0.25)
        },
        **{
            f"distil_posteriors_step{q:g}_ensemble{k}{'_per_kind' if per_kind else ''}": (
                "distil",
                replace(
                    train,
                    distil=DistilConfig(outputs="posteriors", step=q, ad_logit=True, ensemble=k, per_kind=per_kind),
                ),
            )
            for q in (0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15)
            for k in (1, 3, 5)
            for per_kind in (False, True)
        },
        **{
            f"distil_posteriors_step{q:g}_ar_step{a:g}_ensemble{k}_per_kind": (
                "distil",
                replace(train, distil=DistilConfig(outputs="posteriors", step=q, ar_step=a, ad_logit=True, ensemble=k)),
            )
            for q in (0.5, 0.4)
            for a in (0.25, 0.2, 0.15, 0.1)
            for k in (3, 5)
        },
        **{
            f"fisher_static{w:g}": ("fisher", replace(train, fisher=FisherConfig(static_weight=w)))
            for w in (0.0, 0.3, 1.0, 3.0, 10.0, 30.0)
        },
        "fisher": ("fisher", train),
        "bottleneck": ("bottleneck", replace(train, bottleneck=bottleneck)),
        "bottleneck_noise_free": ("bottleneck", replace(train, bottleneck=bottleneck)),
        "bottleneck_keyed_clip": ("bottleneck", replace(train, bottleneck=replace(bottleneck, noise="keyed_clip"))),
        "bottleneck_keyed_video": ("bottleneck", replace(train, bottleneck=replace(bottleneck, noise="keyed_video"))),
    }


def mean_set(fs, kind: str):
    """One row per video: the mean of its ``kind`` features, stored as a one-clip ``clips`` item."""
    from latentanon.features.featureset import FeatureSet

    means = [np.asarray(a, np.float32).mean(axis=0, keepdims=True) for a in fs.kind(kind)]
    return FeatureSet(fs.name, fs.records, {"clips": means}, dict(fs.meta))


def released(method, fs, releases: int):
    """``fs`` published ``releases`` times through the method's transform, averaged per clip."""
    total = None
    for _ in range(releases):
        out = method.transform(fs)
        arrays = {k: [np.asarray(a, np.float64) for a in out.kind(k)] for k in out.arrays}
        total = arrays if total is None else {k: [t + a for t, a in zip(total[k], arrays[k])] for k in total}
    return out.with_arrays({k: [(a / releases).astype(np.float32) for a in v] for k, v in total.items()})


def scope_sets(sets: dict, method=None, releases: tuple[int, ...] = ()) -> dict:
    """Scope name -> (list of feature sets, kind) to attack; ``method`` None: raw."""
    from latentanon.tasks.private import ATTRIBUTES

    def view(fs):
        return fs if method is None else method.transform(fs)

    privacy = {n: view(sets[n]) for n in PRIVACY_SETS if n in sets}
    scopes = {
        "static": ([fs for fs in privacy.values() if "static" in fs.arrays], "static"),
        "moving": ([privacy[MOVING_SET]], "clips"),
        "video_mean": ([mean_set(privacy[MOVING_SET], "clips")], "clips"),
    }
    for scope, name in LONG_SETS.items():
        if name in sets and all(a in sets[name].records.columns for a in ATTRIBUTES):
            scopes[scope] = ([mean_set(view(sets[name]), "snippets")], "clips")
    for r in releases:
        if method is None or identical_releases(method, sets[MOVING_SET]):
            scopes[f"release_{r}"] = "moving"  # every release is the one already attacked
        else:
            scopes[f"release_{r}"] = ([released(method, sets[MOVING_SET], r)], "clips")
    return scopes


def identical_releases(method, fs) -> bool:
    """Whether two publications of ``fs`` through the method are bit-identical."""
    first, second = method.transform(fs), method.transform(fs)
    return all(np.array_equal(a, b) for k in first.arrays for a, b in zip(first.kind(k), second.kind(k)))


def attack_scope(fss: list, kind: str, seed: int) -> dict:
    from latentanon.evaluation.privacy import attack
    from latentanon.tasks.private import ATTRIBUTES

    return attack(*([fs.split(s) for fs in fss] for s in SPLITS), ATTRIBUTES, seed, kind)


def leakage_interval(raw: dict, anonymized: dict, resamples: int, confidence: float) -> dict:
    from latentanon.evaluation import resampling

    labels = raw["items"]["labels"]
    weights = resampling.shared_weights(len(next(iter(labels.values()))), resamples)
    values = resampling.paired_leakage(
        labels, raw["items"]["probabilities"], anonymized["items"]["probabilities"], weights
    )
    point = (anonymized["cmap"] - anonymized["chance"]) / (raw["cmap"] - raw["chance"])
    return {
        "normalized": float(point),
        "cmap": anonymized["cmap"],
        "chance": anonymized["chance"],
        "raw_cmap": raw["cmap"],
        **resampling.percentile_interval(values, confidence),
    }


def task_splits(fs):
    return [fs.split(s) for s in SPLITS]


def utility(task: str, raw_fs, fs, seed: int, inputs: tuple[str, ...], raw_cache: dict) -> dict:
    from latentanon.tasks.scoring import score_task

    key = (task, seed)
    if key not in raw_cache:
        raw_cache[key] = score_task(task, *task_splits(raw_fs), seed, items=True, inputs=inputs)
    return raw_cache[key], score_task(task, *task_splits(fs), seed, items=True, inputs=inputs)


def drop_interval(task: str, raw: dict, anonymized: dict, resamples: int, confidence: float) -> dict:
    from latentanon.evaluation import resampling
    from latentanon.tasks.per_item import resampled_values

    n = {
        "ar": lambda i: len(i["correct"]),
        "tad": lambda i: len(i["snippet_counts"]),
        "ad": lambda i: int(i["unit_video"].max()) + 1,
    }[task](raw["items"])
    weights = resampling.shared_weights(n, resamples)
    raw_values = resampled_values(task, raw["items"], weights)
    values = resampled_values(task, anonymized["items"], weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        drops = (raw_values - values) / raw_values
    return {
        "raw": raw["value"],
        "value": anonymized["value"],
        "drop": (raw["value"] - anonymized["value"]) / raw["value"],
        "inputs": anonymized["inputs"],
        "raw_inputs": raw["inputs"],
        **resampling.percentile_interval(drops, confidence),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="features")
    parser.add_argument("--candidates", nargs="+", default=["floor", "distil", "bottleneck"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--releases", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument(
        "--unseen",
        nargs="*",
        default=None,
        help="candidates that get the held-out-task refits (default: all but identity)",
    )
    parser.add_argument("--no-utility", action="store_true", help="privacy scopes only")
    parser.add_argument("--out", default="benchmarks/results/scopes.json")
    args = parser.parse_args()

    import torch

    from latentanon.config import load_params
    from latentanon.methods.fitting import load_fit_sets
    from latentanon.methods.registry import create_method
    from latentanon.tasks.specs import TASK_SPECS

    torch.set_num_threads(1)
    # keyed-noise candidates publish under a secret of this run only (never written anywhere)
    from latentanon.methods.bottleneck import NOISE_SECRET_ENV

    os.environ.setdefault(NOISE_SECRET_ENV, os.urandom(16).hex())
    params = load_params(args.params)
    confidence = params.evaluate.confidence
    inputs = tuple(params.evaluate.head_inputs)
    sets = load_fit_sets(args.features)  # every split: Method.fit sees train and val rows only
    table = candidates(params.train)
    started = time.perf_counter()
    raw_scopes = scope_sets(sets, None, tuple(args.releases))
    raw = {
        scope: attack_scope(*target, args.seed) for scope, target in raw_scopes.items() if not isinstance(target, str)
    }
    raw.update({scope: raw[target] for scope, target in raw_scopes.items() if isinstance(target, str)})
    result = {
        "features": args.features,
        "seed": args.seed,
        "resamples": args.resamples,
        "confidence": confidence,
        "head_inputs": list(inputs),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "raw": {
            s: {"cmap": r["cmap"], "chance": r["chance"], "n_test_videos": r["n_test_videos"]} for s, r in raw.items()
        },
        "candidates": {},
    }
    print(f"raw scopes: {result['raw']} ({time.perf_counter() - started:.0f}s)", flush=True)
    raw_utility: dict = {}
    for label in args.candidates:
        name, train_cfg = table[label]
        t0 = time.perf_counter()
        method = create_method(name, train_cfg).fit(sets, seed=args.seed)
        fit_seconds = time.perf_counter() - t0
        if label == "bottleneck_noise_free":
            method.config = replace(method.config, sigma=0.0)
        row = {
            "method": name,
            "fit_seconds": round(fit_seconds, 1),
            "output_dim": method.output_dim,
            "info": {k: v for k, v in method.info.items() if k in ("heads", "seen_tasks", "best_step")},
            "scopes": {},
        }
        scopes = scope_sets(sets, method, tuple(args.releases))
        for scope, target in scopes.items():
            if isinstance(target, str):
                row["scopes"][scope] = {**row["scopes"][target], "identical_to": target}
                continue
            fss, kind = target
            row["scopes"][scope] = leakage_interval(
                raw[scope], attack_scope(fss, kind, args.seed), args.resamples, confidence
            )
        row["worst_scope"] = max(row["scopes"], key=lambda s: row["scopes"][s]["high"])
        if not args.no_utility:
            row["utility"] = {}
            for task, spec in TASK_SPECS.items():
                raw_fs = sets[spec.set_name]
                raw_score, score = utility(task, raw_fs, method.transform(raw_fs), args.seed, inputs, raw_utility)
                row["utility"][task] = drop_interval(task, raw_score, score, args.resamples, confidence)
        if name != "identity" and (args.unseen is None or label in args.unseen):
            row["unseen"] = {}
            for task, spec in TASK_SPECS.items():
                held = replace(train_cfg, tasks=replace(train_cfg.tasks, **{task: 0.0}))
                refit = create_method(name, held).fit(sets, seed=args.seed)
                raw_fs = sets[spec.set_name]
                raw_score, score = utility(task, raw_fs, refit.transform(raw_fs), args.seed, inputs, raw_utility)
                row["unseen"][task] = drop_interval(task, raw_score, score, args.resamples, confidence)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        result["candidates"][label] = row
        brief = {s: f"{v['normalized']:.2f} [{v['low']:.2f}, {v['high']:.2f}]" for s, v in row["scopes"].items()}
        drops = {t: f"{v['drop']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]" for t, v in row.get("utility", {}).items()}
        unseen = {t: f"{v['drop']:+.3f}" for t, v in row.get("unseen", {}).items()}
        print(f"{label}: {brief} drops {drops} unseen {unseen} ({row['seconds']}s)", flush=True)
        write_result(result, args.out)
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
