"""One function per pipeline step. DVC (through the CLI) and the KFP components call these.

Each stage reads the typed params, writes its files under the layout, and returns a small
summary dict (also written as reports/<stage>/summary.json by the CLI).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from latentanon._configtools import from_dict
from latentanon._files import read_json, write_json_atomic
from latentanon._redact import redact
from latentanon.config import Layout, Params
from latentanon.formatting import figure, percent
from latentanon.layout import PIPELINE
from latentanon.methods.config import LossWeights, TrainConfig


def generate(params: Params) -> dict:
    from latentanon.data.synthetic import generate_benchmark

    layout = Layout.from_params(params)
    return generate_benchmark(params.data, layout.data_root, layout.report_dir("generate"))


def validate(params: Params) -> dict:
    from latentanon.data.validation import validate_benchmark

    layout = Layout.from_params(params)
    return validate_benchmark(
        params.data, params.validate, layout.data_root, layout.manifests, layout.report_dir("validate")
    )


def pretrain_encoder(params: Params) -> dict:
    from latentanon.encoders.pretrain import pretrain_encoder as run

    layout = Layout.from_params(params)
    return run(
        params.pretrain_encoder,
        params.data,
        layout.manifests,
        layout.data_root,
        layout.encoder_dir,
        layout.report_dir("pretrain_encoder"),
    )


def extract(params: Params, worker: int = 0, num_workers: int = 1, finalize: bool = True) -> dict:
    """Extract features into the store; ``worker``/``num_workers`` split the shards (KFP fan-out)."""
    from latentanon.encoders.extraction import extract_features, finalize_store

    layout = Layout.from_params(params)
    summary = extract_features(
        params.extract,
        params.data,
        layout.manifests,
        layout.data_root,
        layout.encoder_dir,
        layout.features_uri,
        worker=worker,
        num_workers=num_workers,
    )
    if finalize:
        summary["index"] = finalize_store(layout.features_uri)
    return summary


def finalize_extract(params: Params) -> dict:
    """Join the shards written by parallel extract workers into the store's index."""
    from latentanon.encoders.extraction import finalize_store

    return finalize_store(Layout.from_params(params).features_uri)


def tune(params: Params) -> dict:
    from latentanon.evaluation.dvc_views import pareto_rows, write_rows_csv
    from latentanon.tuning.search import run_search

    layout = Layout.from_params(params)
    summary = run_search(params.for_search(), params.tracked(), layout)
    pareto = layout.report_dir("tune") / "pareto.json"
    if pareto.exists():  # data for `dvc plots` next to pareto.png
        write_rows_csv(pareto_rows(json.loads(pareto.read_text())), pareto.with_name("pareto_front.csv"))
    return summary


def tuned_choice(params: Params) -> dict | None:
    """The tune stage's chosen operating point, when train is asked to use it and it exists."""
    chosen = Layout.from_params(params).report_dir("tune") / "chosen.json"
    if params.train.use_tuned_weights and chosen.exists():
        return json.loads(chosen.read_text())
    return None


def trained_method_name(params: Params) -> str:
    """``train.method``; ``tuned`` means the method the tune stage chose (paper if it chose none)."""
    if params.train.method != "tuned":
        return params.train.method
    choice = tuned_choice(params)
    return str(choice.get("method", "paper")) if choice else "paper"


def _choice_applies(params: Params, choice: dict | None) -> bool:
    """The tune stage's knobs apply only to the method they were searched for."""
    return choice is not None and str(choice.get("method", "paper")) == trained_method_name(params)


def chosen_weights(params: Params) -> LossWeights:
    """The loss weights train uses: the tune stage's choice when asked for and present, else params."""
    choice = tuned_choice(params)
    if choice is None or not _choice_applies(params, choice) or "weights" not in choice:
        return params.train.weights
    return from_dict(LossWeights, choice["weights"], "tune/chosen.json:weights")


def chosen_train_config(params: Params) -> TrainConfig:
    """params.train with the method to train, and the weights / learning rate the search chose."""
    choice = tuned_choice(params)
    train = replace(params.train, method=trained_method_name(params), weights=chosen_weights(params))
    if choice is None or not _choice_applies(params, choice):
        return train
    if "lr" in choice:
        train = replace(train, lr=float(choice["lr"]))
    for section in ("bottleneck", "fisher", "distil"):  # a method's searched knobs, under its own section
        if section in choice:
            knobs = {k: float(v) for k, v in choice[section].items()}
            train = replace(train, **{section: replace(getattr(train, section), **knobs)})
    return train


def train(params: Params) -> dict:
    """Fit ``train.method`` on the stored features, save it to models/method, write the anonymized store."""
    from latentanon.methods.apply import anonymize_store
    from latentanon.methods.fitting import train_method

    layout = Layout.from_params(params)
    train_cfg = chosen_train_config(params)
    _, summary = train_method(
        train_cfg.method, train_cfg, layout.features_uri, layout.method_dir, layout.report_dir("train")
    )
    history = layout.report_dir("train") / "history.json"
    if history.exists():  # data for `dvc plots` next to loss_curves.png
        from latentanon.evaluation.dvc_views import history_rows, write_rows_csv

        write_rows_csv(history_rows(json.loads(history.read_text())), history.with_name("loss_curves.csv"))
    summary["anonymized"] = anonymize_store(layout.method_dir, layout.features_uri, layout.anonymized_uri)
    summary["publish_status"] = write_publish_status(
        layout.anonymized_uri,
        UNAPPROVED,
        ["awaiting the gate: these features were made by a method the gate has not judged yet; do not share them"],
    )
    return summary


def evaluate(params: Params) -> dict:
    from latentanon.evaluation.run import evaluate as run

    layout = Layout.from_params(params)
    return run(params.evaluate, params.train, layout)


def audit_bias(params: Params) -> dict:
    from latentanon.evaluation.bias import audit_bias as run
    from latentanon.evaluation.dvc_views import (
        HEADLINE_FILE,
        PRIVACY_UTILITY_CSV,
        headline_metrics,
        privacy_utility_rows,
        write_rows_csv,
    )

    layout = Layout.from_params(params)
    summary = run(params.audit_bias, params.gate, layout)
    # The DVC metric is a short headline; the full tree stays in metrics.json for the gate.
    tree = json.loads((layout.reports / "metrics.json").read_text())
    headline = headline_metrics(tree)
    write_json_atomic(layout.reports / HEADLINE_FILE, headline)
    write_rows_csv(privacy_utility_rows(tree), layout.report_dir("audit_bias") / PRIVACY_UTILITY_CSV)
    summary["headline"] = headline
    return summary


def gate(params: Params, promote: bool = True) -> dict:
    """Register the trained method as @candidate and decide; promote to @champion when approved.

    ``promote=False`` stops after the decision: the Kubeflow pipeline promotes in a dsl.If branch.
    """
    from latentanon.tracking.gate import register_and_decide, run_gate

    layout = Layout.from_params(params)
    summary = run_gate(params.tracked(), layout) if promote else register_and_decide(params.tracked(), layout)
    status = APPROVED if summary["decision"] == APPROVED else REJECTED
    reasons = summary["reasons"] or [
        f"all gate checks passed; version {summary['version']} of {summary['model_name']} is the model that made them"
    ]
    summary["publish_status"] = write_publish_status(layout.anonymized_uri, status, reasons)
    return summary


# --------------------------------------------------------------------------- what may be shared

PUBLISH_STATUS_FILE = "PUBLISH_STATUS.json"
UNAPPROVED, APPROVED, REJECTED = "unapproved", "approved", "rejected"


def write_publish_status(store_uri: str, status: str, reasons: list[str]) -> str:
    """Mark the anonymized store with whether the gate approved the method that made it.

    The release is marked "unapproved" before its first shard is written (methods.apply), train
    leaves it "unapproved" (awaiting the gate) and the gate rewrites it to "approved" or
    "rejected" with its reasons. DVC ignores the file (.dvcignore), so the gate's rewrite does
    not make train's output look changed. Returns the status written, or why none was.
    """
    from latentanon.features.release import write_publish_status as write

    return write(store_uri, status, reasons)


def read_publish_status(store_uri: str) -> dict | None:
    """The store's publish status record, or None when it has none."""
    from latentanon.features.release import read_publish_status as read

    return read(store_uri)


def anonymize(model_uri: str, features: str, out: str, params: Params | None = None) -> dict:
    """Apply a registered, gate-approved method (e.g. ``@champion``) to a stored feature set.

    The registry is the one the pipeline used (``tracking_uri_for(params)``). The output store is
    marked approved: only an approved version gets this far.
    """
    from latentanon.tracking.registry import anonymize_with_registered_model

    summary = anonymize_with_registered_model(model_uri, features, out, tracking_uri_for(params or Params()))
    summary["publish_status"] = write_publish_status(
        out, APPROVED, [f"made by version {summary['version']} of {summary['model_name']}, approved by the gate"]
    )
    return summary


def tracking_uri_for(params: Params) -> str:
    """The MLflow tracking URI every command uses (see latentanon.tracking.uri)."""
    from latentanon.tracking.uri import tracking_uri

    return tracking_uri(params.tracking.tracking_uri, Layout.from_params(params).workdir)


def audit(
    features: str,
    out: str,
    seeds: list[int],
    confidence: float = 0.95,
    bootstrap: int = 1000,
    method: str | None = None,
) -> dict:
    """The attack suite on any feature store with private labels (``latentanon audit``); ``method``:
    a saved method's folder, whose re-releases are attacked too."""
    from latentanon.evaluation.audit import audit as run

    return run(features, out, seeds, confidence, bootstrap, method)


def stage_artifacts(stage: str, params: Params) -> list[Path]:
    """The files a person looks at after a stage: logged to the pipeline's MLflow run."""
    layout = Layout.from_params(params)
    artifacts = [layout.report_dir(stage)]
    if stage == "audit_bias":
        artifacts += [layout.reports / "metrics.json", layout.reports / "report.md"]
    return artifacts


def stage_table() -> dict[str, Callable[..., dict]]:
    """Each pipeline step's stage function by name (PIPELINE's order), plus the extraction fan-in
    the Kubeflow pipeline runs after its shards."""
    table: dict[str, Callable[..., dict]] = {
        "generate": generate,
        "validate": validate,
        "pretrain_encoder": pretrain_encoder,
        "extract": extract,
        "tune": tune,
        "train": train,
        "evaluate": evaluate,
        "audit_bias": audit_bias,
        "gate": gate,
        "finalize_extract": finalize_extract,
    }
    return table


def execute(name: str, params: Params, track: bool = True, **kwargs) -> dict:
    """Run one stage, record its summary and time, and log it to the pipeline's MLflow run.

    The CLI (hence DVC) and the KFP components both go through here.
    """
    stage_functions = stage_table()
    if name not in stage_functions:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(PIPELINE)}")
    t0 = time.perf_counter()
    summary = stage_functions[name](params, **kwargs) or {}
    # what leaves as a log (summary.json, MLflow, the Kubeflow UI) carries no credential
    summary = {**redact(summary), "seconds": round(time.perf_counter() - t0, 3)}
    write_summary(name, params, summary)
    if track:
        from latentanon.tracking.runs import log_stage

        artifacts = [p for p in stage_artifacts(name, params) if p.exists()]
        log_stage(params.tracked(), Layout.from_params(params), name, summary, artifacts)
    return summary


def write_summary(stage: str, params: Params, summary: dict) -> Path:
    out = Layout.from_params(params).report_dir(stage) / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return out


# --------------------------------------------------------------------------- what the terminal shows


def key_result(stage: str, summary: dict) -> str:
    """The one line a person wants after a stage: its main figure, from its summary dict."""
    s = summary
    if stage == "generate":
        videos = s.get("videos") or {}
        return f"{sum(videos.values()) if isinstance(videos, dict) else videos} files in {s.get('root', '?')}"
    if stage == "validate":
        quarantined = s.get("quarantined")
        n_quarantined = len(quarantined) if isinstance(quarantined, (list, dict)) else quarantined
        return f"{s.get('checks', '?')} checks passed on {len(s.get('sets') or {})} sets; {n_quarantined} files quarantined"
    if stage == "pretrain_encoder":
        if s.get("reused"):
            return "encoder unchanged (same fingerprint), kept"
        if s.get("trained") is False:
            return f"using the encoder at {s.get('source', '?')}"
        probe = s.get("probe") or {}
        if "action_top1" in probe:
            low, high = probe.get("action_top1_interval") or (None, None)
            return (
                f"encoder trained; action probe top-1 {figure(probe['action_top1'])} [{figure(low)}, {figure(high)}] "
                f"(chance {figure(probe.get('action_chance'))})"
            )
        return f"encoder trained; validation action accuracy {figure(s.get('val_accuracy'))} (no probe)"
    if stage == "finalize_extract":
        return f"store index written for {len(s.get('sets') or {})} sets at {s.get('uri', '?')}"
    if stage == "extract":
        return f"{s.get('clips', '?')} clips encoded ({figure(s.get('clips_per_second'), 1)} clips/s) into {s.get('store', '?')}"
    if stage == "tune":
        chosen = s.get("chosen") or {}
        return (
            f"{s.get('trials_complete', '?')} trials, Pareto front of {s.get('front_size', '?')}; chose trial "
            f"{chosen.get('trial', '?')} (val leakage {figure(chosen.get('leakage'))}, raw {figure(s.get('raw_leakage'))})"
        )
    if stage == "train":
        fit = f" ({s['epochs']} checkpoints on val, best at {s.get('best_epoch', '?')})" if "epochs" in s else ""
        return (
            f"method {s.get('method', '?')} fitted{fit}; anonymized store written, marked "
            f"{s.get('publish_status', '?')}"
        )
    if stage == "evaluate":
        drops = s.get("trained_utility_relative_drop") or {}
        worst = s.get("trained_worst_scope") or {}
        return (
            f"trained method: static normalised leakage {figure(s.get('trained_normalized_leakage'))}, worst scope "
            f"{worst.get('scope') or 'n/a'} {figure(worst.get('mean'))} (upper {figure(worst.get('high'))}), utility drop "
            + ", ".join(f"{t.upper()} {percent(v)}" for t, v in drops.items())
        )
    if stage == "audit_bias":
        h = s.get("headline") or {}
        p = h.get("privacy") or {}
        return (
            f"leakage static {figure(p.get('static_leakage'))} [{figure(p.get('static_leakage_low'))}, "
            f"{figure(p.get('static_leakage_high'))}], moving {figure(p.get('moving_leakage'))}; bias gap raw "
            f"{figure(s.get('bias_gap_raw'))} -> trained {figure(s.get('bias_gap_trained'))}; report in {s.get('report', '?')}"
        )
    if stage == "gate":
        line = f"{str(s.get('decision', '?')).upper()}: version {s.get('version')} of {s.get('model_name', '?')}"
        if s.get("promoted"):
            return line + " is now @champion"
        reasons = s.get("reasons") or []
        return line + f" not promoted ({len(reasons)} reason{'s' if len(reasons) != 1 else ''}; `latentanon verdict`)"
    if stage == "anonymize":
        return f"{s.get('destination', '?')} written with version {s.get('version', '?')} of {s.get('model_name', '?')}"
    return ", ".join(f"{k}={v}" for k, v in s.items() if isinstance(v, (int, float, str)) and k != "seconds")[:200]


def verdict(params: Params) -> dict:
    """The last gate decision (reports/gate/decision.json) and what the user does next."""
    from latentanon.errors import LatentanonError

    path = Layout.from_params(params).report_dir("gate") / "decision.json"
    decision = read_json(
        path,
        LatentanonError,
        missing="no gate decision yet: run the pipeline (make run, or latentanon run)",
        invalid="run the gate again: latentanon gate",
    )
    workdir = Layout.from_params(params).workdir
    # the main job (DVC) runs in the repository itself; smoke and ad-hoc workdirs are not committed
    in_dvc_job = workdir.resolve() == Path.cwd().resolve() and Path("dvc.yaml").exists()
    return {"path": str(path), "report": str(path.parents[1] / "report.md"), "dvc_job": in_dvc_job, **decision}


def verdict_text(decision: dict) -> str:
    """The verdict for people: decision, each reason, where to look, what to commit."""
    approved = decision.get("decision") == APPROVED
    name, version = decision.get("model_name", "?"), decision.get("version")
    lines = [
        f"Gate decision: {str(decision.get('decision', '?')).upper()} "
        f"(model {name}, version {version or 'none registered'}, {decision.get('decided_at', '?')})"
    ]
    if approved:
        lines.append(
            f"  version {version} is @champion: `latentanon anonymize --model models:/{name}@champion ...` "
            "uses it; the features in features_anon/ are marked approved for sharing."
        )
    else:
        lines.append("  not promoted; features_anon/ is marked rejected: do not share it. Because:")
        lines += [f"  - {reason}" for reason in decision.get("reasons") or ["(no reason recorded)"]]
    passed = [c["name"] for c in decision.get("checks") or [] if c.get("passed")]
    if passed:
        lines.append(f"  checks passed: {', '.join(passed)}")
    lines.append(
        f"  details: {decision.get('path', 'reports/gate/decision.json')}, "
        f"{decision.get('report', 'reports/report.md')}"
    )
    if decision.get("dvc_job", True):
        lines.append('  record this run: git add dvc.lock params.yaml && git commit -m "<what you changed>"')
    else:
        lines.append("  this run's workdir is outside the DVC job: nothing of it is committed")
    return "\n".join(lines)
