"""One function per pipeline step. DVC (through the CLI) and the KFP components call these.

Each stage reads the typed params, writes its files under the layout, and returns a small
summary dict (also written as reports/<stage>/summary.json by the CLI).
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from latentanon.methods.config import LossWeights, TrainConfig
from latentanon.config import Layout, Params
from latentanon._configtools import from_dict


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
    from latentanon.tuning.search import run_search

    layout = Layout.from_params(params)
    return run_search(params, layout)


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
    if not _choice_applies(params, choice) or "weights" not in choice:
        return params.train.weights
    return from_dict(LossWeights, choice["weights"], "tune/chosen.json:weights")


def chosen_train_config(params: Params) -> TrainConfig:
    """params.train with the method to train, and the weights / learning rate the search chose."""
    choice = tuned_choice(params)
    train = replace(params.train, method=trained_method_name(params), weights=chosen_weights(params))
    if _choice_applies(params, choice) and "lr" in choice:
        train = replace(train, lr=float(choice["lr"]))
    return train


def train(params: Params) -> dict:
    """Fit ``train.method`` on the stored features, save it to models/aam, write the anonymized store."""
    from latentanon.methods.apply import anonymize_store
    from latentanon.methods.fitting import train_method

    layout = Layout.from_params(params)
    train_cfg = chosen_train_config(params)
    _, summary = train_method(train_cfg.method, train_cfg, layout.features_uri, layout.adapter_dir,
                              layout.report_dir("train"))
    summary["anonymized"] = anonymize_store(layout.adapter_dir, layout.features_uri, layout.anonymized_uri)
    return summary


def evaluate(params: Params) -> dict:
    from latentanon.evaluation.run import evaluate as run

    layout = Layout.from_params(params)
    return run(params, layout)


def audit_bias(params: Params) -> dict:
    from latentanon.evaluation.bias import audit_bias as run

    layout = Layout.from_params(params)
    return run(params, layout)


def gate(params: Params, promote: bool = True) -> dict:
    """Register the adapter as @candidate and decide; promote to @champion when approved.

    ``promote=False`` stops after the decision: the Kubeflow pipeline promotes in a dsl.If branch.
    """
    from latentanon.tracking.gate import register_and_decide, run_gate

    layout = Layout.from_params(params)
    return run_gate(params, layout) if promote else register_and_decide(params, layout)


def anonymize(model_uri: str, features: str, out: str) -> dict:
    """Apply a registered (gate-approved) method to a stored feature set."""
    from latentanon.tracking.registry import anonymize_with_registered_model

    return anonymize_with_registered_model(model_uri, features, out)


def audit(features: str, out: str, seeds: list[int], confidence: float = 0.95, bootstrap: int = 1000) -> dict:
    """The attack suite on any feature store with private labels (``latentanon audit``)."""
    from latentanon.evaluation.audit import audit as run

    return run(features, out, seeds, confidence, bootstrap)


PIPELINE = (
    "generate",
    "validate",
    "pretrain_encoder",
    "extract",
    "tune",
    "train",
    "evaluate",
    "audit_bias",
    "gate",
)


def stage_artifacts(stage: str, params: Params) -> list[Path]:
    """The files a person looks at after a stage: logged to the pipeline's MLflow run."""
    layout = Layout.from_params(params)
    artifacts = [layout.report_dir(stage)]
    if stage == "audit_bias":
        artifacts += [layout.reports / "metrics.json", layout.reports / "report.md"]
    return artifacts


def execute(name: str, params: Params, track: bool = True, **kwargs) -> dict:
    """Run one stage, record its summary and time, and log it to the pipeline's MLflow run.

    The CLI (hence DVC) and the KFP components both go through here.
    """
    if name not in (*PIPELINE, "finalize_extract"):
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(PIPELINE)}")
    t0 = time.perf_counter()
    summary = globals()[name](params, **kwargs) or {}
    summary = {**summary, "seconds": round(time.perf_counter() - t0, 3)}
    write_summary(name, params, summary)
    if track:
        from latentanon.tracking.runs import log_stage

        log_stage(params, name, summary, [p for p in stage_artifacts(name, params) if p.exists()])
    return summary


def write_summary(stage: str, params: Params, summary: dict) -> Path:
    out = Layout.from_params(params).report_dir(stage) / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return out
