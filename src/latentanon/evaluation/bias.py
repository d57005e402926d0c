"""The ``audit_bias`` stage: NTU-Bias-F / NTU-Bias-M on the subject-annotated ``bias`` set.

Protocol, per seed and variant: the training split keeps every video of the variant's majority
gender and only enough of the other gender for a ``skew`` share (95/5 by default) in every action,
except one shortcut action where the skew is flipped; validation (for the AR head's
hyper-parameters) and test are gender-balanced per action. A linear AR head on moving clips
(latentanon.tasks.fitting) is trained on raw features and on those of the trained method; fairlearn's
MetricFrame gives accuracy per gender, overall, and the gap between genders. The stage then
writes reports/metrics.json and reports/report.md from this audit and the evaluate stage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score
from tqdm.auto import tqdm

from latentanon.data.actors import GENDERS
from latentanon.errors import DataError, LatentanonError
from latentanon.evaluation import metrics
from latentanon.evaluation.config import BiasConfig
from latentanon.evaluation.metric_keys import TRAINED
from latentanon.evaluation.targets import GateThresholds
from latentanon.features.featureset import FeatureSet
from latentanon.figures import pyplot, save_figure
from latentanon.layout import Layout

BIAS_SET = "bias"
# Gender ids as the benchmark and its loaders write them: 0 masculine, 1 feminine.
GENDER_NAMES = dict(enumerate(GENDERS))
VARIANTS = {"F": 1, "M": 0}  # NTU-Bias-F trains mostly on feminine-presenting subjects


def shortcut_label(train: FeatureSet, name: str) -> int:
    """label_id of the shortcut action: the named one, else the lowest label id."""
    records = train.records
    if name:
        hits = records.loc[records["label"] == name, "label_id"]
        if hits.empty:
            raise DataError(f"audit_bias.shortcut_action: no action {name!r} in the {BIAS_SET} train split")
        return int(hits.iloc[0])
    return int(records["label_id"].min())


def skewed_subset(train: FeatureSet, majority: int, shortcut: int, skew: float, rng: np.random.Generator) -> FeatureSet:
    """Keep every majority-gender video per action and a (1 - skew) / skew share of the others."""
    if not 0.5 <= skew < 1:
        raise ValueError(f"audit_bias.skew must be in [0.5, 1), got {skew}")
    records = train.records
    keep = []
    for label_id, group in records.groupby("label_id", sort=True):
        major = majority if int(label_id) != shortcut else 1 - majority
        major_rows = group.index[group["gender"] == major].to_numpy()
        minor_rows = group.index[group["gender"] != major].to_numpy()
        n_minor = min(len(minor_rows), int(round(len(major_rows) * (1 - skew) / skew)))
        keep.extend(major_rows)
        keep.extend(rng.choice(minor_rows, size=n_minor, replace=False) if n_minor else [])
    return train.subset(np.sort(np.asarray(keep, dtype=int)))


def balanced_subset(fs: FeatureSet, rng: np.random.Generator) -> FeatureSet:
    """Per action, as many videos of each gender (the smaller count)."""
    keep: list[np.integer] = []
    for _, group in fs.records.groupby("label_id", sort=True):
        by_gender = [group.index[group["gender"] == g].to_numpy() for g in sorted(GENDER_NAMES)]
        n = min(len(rows) for rows in by_gender)
        for rows in by_gender:
            keep.extend(rng.choice(rows, size=n, replace=False) if n else [])
    return fs.subset(np.sort(np.asarray(keep, dtype=int)))


def fairness(y_true: np.ndarray, y_pred: np.ndarray, gender: np.ndarray) -> dict:
    """Accuracy overall and per gender, and the gap (largest minus smallest group accuracy)."""
    frame = MetricFrame(
        metrics=accuracy_score,
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=[GENDER_NAMES.get(int(g), str(g)) for g in gender],
    )
    return {
        "overall": float(frame.overall),
        "by_gender": {str(k): float(v) for k, v in frame.by_group.items()},
        "gap": float(frame.difference(method="between_groups")),
    }


def audit_variant(fs: FeatureSet, majority: int, shortcut: int, skew: float, seed: int) -> dict:
    """Train the AR head on the skewed train split, select on balanced val, audit on balanced test."""
    import torch

    from latentanon.tasks.fitting import FittedHead, evaluate_head, fit_head
    from latentanon.tasks.heads import ARHead
    from latentanon.tasks.specs import TASK_SPECS

    rng = np.random.default_rng(seed)
    train = skewed_subset(fs.split("train"), majority, shortcut, skew, rng)
    val = balanced_subset(fs.split("val"), rng)
    test = balanced_subset(fs.split("test"), rng)
    for split, part in (("train", train), ("val", val), ("test", test)):
        if len(part) == 0:
            raise DataError(f"{BIAS_SET} set: the {split} split is empty after the bias protocol")
    best: tuple[float, dict, FittedHead] | None = None
    for hyper in TASK_SPECS["ar"].grid:
        fitted = fit_head("ar", train, hyper, seed)
        value = evaluate_head(fitted, val)
        if best is None or value > best[0]:
            best = (value, hyper, fitted)
    assert best is not None  # the AR grid is a non-empty constant
    _, hyper, fitted = best
    assert isinstance(fitted.head, ARHead)  # fit_head("ar", ...) builds an ARHead
    x, mask = fitted.inputs.padded(test.kind("clips"))
    with torch.no_grad():
        predictions = fitted.head.video_probabilities(x, mask).numpy().argmax(axis=1)
    result = fairness(test.records["label_id"].to_numpy(), predictions, test.records["gender"].to_numpy())
    train_share = float((train.records["gender"] == majority).mean())
    return {
        **result,
        "selected": dict(hyper),
        "n_train": len(train),
        "n_test": len(test),
        "train_majority_share": train_share,
    }


def _summaries(runs: list[dict], confidence: float) -> dict:
    genders = sorted({g for r in runs for g in r["by_gender"]})
    return {
        "overall": metrics.mean_interval([r["overall"] for r in runs], confidence),
        "gap": metrics.mean_interval([r["gap"] for r in runs], confidence),
        "by_gender": {
            g: metrics.mean_interval([r["by_gender"].get(g, float("nan")) for r in runs], confidence) for g in genders
        },
    }


def plot_bias(summary: dict, path: Path) -> Path:
    plt = pyplot()

    sources = list(summary["sources"])
    variants = list(summary["variants"])
    genders = sorted({g for v in variants for s in sources for g in summary["variants"][v][s]["by_gender"]})
    fig, axes = plt.subplots(1, len(variants), figsize=(4.5 * len(variants), 3.8), sharey=True, squeeze=False)
    for ax, variant in zip(axes[0], variants):
        labels = [*genders, "overall"]
        width = 0.8 / len(sources)
        for i, source in enumerate(sources):
            block = summary["variants"][variant][source]
            stats = [block["by_gender"][g] for g in genders] + [block["overall"]]
            means = np.array([s["mean"] for s in stats])
            errs = np.nan_to_num(np.array([[s["mean"] - s["low"], s["high"] - s["mean"]] for s in stats]).T)
            ax.bar(
                np.arange(len(labels)) + (i - (len(sources) - 1) / 2) * width,
                means,
                width,
                yerr=errs,
                capsize=2,
                label=f"{source} (gap {block['gap']['mean']:.3f})",
            )
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_title(f"NTU-Bias-{variant}")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("AR top-1 on the gender-balanced test")
    fig.tight_layout()
    save_figure(fig, path)
    return path


def run_audit(cfg: BiasConfig, layout: Layout) -> dict:
    """The audit itself (raw and the trained method, both variants, every seed): the bias.json content."""
    from latentanon.features.store import list_feature_sets, load_feature_set

    if not cfg.seeds:
        raise ValueError("audit_bias.seeds: at least one seed is needed")
    sources = {"raw": layout.features_uri, TRAINED: layout.anonymized_uri}
    sets = {}
    for source, uri in sources.items():
        if BIAS_SET not in list_feature_sets(uri):
            raise DataError(f"{uri}: no {BIAS_SET!r} feature set for the bias audit")
        sets[source] = load_feature_set(uri, BIAS_SET)
        if source != "raw":  # a release holds no gender: the raw store's records, checked to align
            from latentanon.features.release import with_source_records

            sets[source] = with_source_records(sets[source], sets["raw"], uri)
        missing = [c for c in ("gender", "label_id", "split") if c not in sets[source].records.columns]
        if missing:
            raise DataError(f"{uri}: the {BIAS_SET!r} set lacks columns {missing}")
    from latentanon.methods.registry import load_method

    trained = load_method(layout.method_dir) if layout.method_dir.exists() else None
    if trained is not None and trained.stochastic:
        # as in evaluate: the shared store's noise is fresh; the audit keys it so figures reproduce
        sets[TRAINED] = trained.with_reproducible_noise(0).transform(sets["raw"])
    shortcut = shortcut_label(sets["raw"].split("train"), cfg.shortcut_action)
    shortcut_name = str(sets["raw"].records.loc[sets["raw"].records["label_id"] == shortcut, "label"].iloc[0])
    runs: dict[str, dict[str, list[dict]]] = {v: {s: [] for s in sources} for v in VARIANTS}
    with tqdm(total=len(VARIANTS) * len(sources) * len(cfg.seeds), desc="audit_bias", unit="run", disable=None) as bar:
        for variant, majority in VARIANTS.items():
            for source in sources:
                for seed in cfg.seeds:
                    runs[variant][source].append(audit_variant(sets[source], majority, shortcut, cfg.skew, seed))
                    bar.update(1)
    summary = {
        "protocol": {
            "skew": cfg.skew,
            "shortcut_action": shortcut_name,
            "shortcut_label_id": shortcut,
            "variants": {v: GENDER_NAMES[m] for v, m in VARIANTS.items()},
        },
        "seeds": list(cfg.seeds),
        "confidence": cfg.confidence,
        "sources": list(sources),
        "variants": {v: {s: _summaries(runs[v][s], cfg.confidence) for s in sources} for v in VARIANTS},
        "pooled": {s: _summaries([r for v in VARIANTS for r in runs[v][s]], cfg.confidence) for s in sources},
        "runs": runs,
    }
    return summary


def audit_bias(cfg: BiasConfig, gate: GateThresholds, layout: Layout) -> dict:
    """The stage: bias.json and bias.png, then reports/metrics.json and reports/report.md (whose
    decisions and targets apply the ``gate`` section's thresholds)."""
    from latentanon._files import write_json_atomic
    from latentanon.evaluation.metrics_tree import build_metrics
    from latentanon.evaluation.report import write_report

    started = time.time()
    report_dir = layout.report_dir("audit_bias")
    report_dir.mkdir(parents=True, exist_ok=True)
    evaluation_path = layout.report_dir("evaluate") / "evaluation.json"
    if not evaluation_path.exists():
        raise LatentanonError(f"{evaluation_path}: missing; run the evaluate stage before audit_bias")
    try:
        evaluation = json.loads(evaluation_path.read_text())
    except json.JSONDecodeError as exc:
        raise LatentanonError(f"{evaluation_path}: not valid JSON ({exc}); re-run the evaluate stage") from exc
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny heads: one thread beats several fighting for shared cores
    try:
        bias = run_audit(cfg, layout)
    finally:
        torch.set_num_threads(threads)
    bias["plot"] = plot_bias(bias, report_dir / "bias.png").name
    bias["seconds"] = round(time.time() - started, 1)
    write_json_atomic(report_dir / "bias.json", bias)
    metrics_tree = build_metrics(evaluation, bias, gate)
    write_json_atomic(layout.reports / "metrics.json", metrics_tree)
    report_path = write_report(metrics_tree, evaluation, bias, layout.reports / "report.md")
    return {
        "bias_gap_raw": bias["pooled"]["raw"]["gap"]["mean"],
        "bias_gap_trained": bias["pooled"][TRAINED]["gap"]["mean"],
        "metrics": str(layout.reports / "metrics.json"),
        "report": str(report_path),
        "targets": {k: v["passed"] for k, v in metrics_tree["targets"].items()},
        "seconds": bias["seconds"],
    }
