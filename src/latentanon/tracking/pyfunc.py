"""The trained adapter as an MLflow pyfunc model: one feature sequence (T, d) in, its anonymized
sequence (T, d) out. The adapter's own files (adapter.safetensors + config.json) travel as the
model's artifacts, so the registry holds exactly what ``latentanon.adapter.apply`` loads."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np

from latentanon.errors import ModelError

ADAPTER_ARTIFACT = "adapter"
MODEL_NAME_IN_RUN = "aam"
ADAPTER_FILES = ("adapter.safetensors", "config.json")
# What loading the model needs, pinned to the versions that trained it. Listed explicitly:
# letting MLflow infer them loads the model in a subprocess, which costs seconds per log.
_REQUIREMENTS = ("latentanon", "torch", "numpy", "safetensors", "cloudpickle")


class AAMPyfunc(mlflow.pyfunc.PythonModel):
    """Wraps ``latentanon.adapter.aam.AAM``; loaded from the model's ``adapter`` artifact."""

    def load_context(self, context) -> None:
        from latentanon.adapter.aam import load_adapter

        self.adapter_dir = Path(context.artifacts[ADAPTER_ARTIFACT])
        self.model = load_adapter(self.adapter_dir)

    def predict(self, context, model_input, params=None):
        import torch

        sequence = np.asarray(model_input, dtype=np.float32)
        if sequence.ndim != 2 or sequence.shape[-1] != self.model.dim:
            raise ModelError(
                f"adapter model expects one (T, {self.model.dim}) feature sequence, got shape {sequence.shape}"
            )
        with torch.no_grad():
            return self.model(torch.from_numpy(sequence)).numpy().astype(np.float32)


def adapter_dim(adapter_dir: Path) -> int:
    config_path = Path(adapter_dir) / "config.json"
    if not config_path.exists():
        raise ModelError(f"{config_path}: adapter config missing (did the train stage run?)")
    try:
        return int(json.loads(config_path.read_text())["dim"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{config_path}: no usable 'dim' entry: {exc}") from exc


def signature(dim: int):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    # Unnamed tensor specs: the model then receives and returns a bare (T, d) array.
    sequence = Schema([TensorSpec(np.dtype(np.float32), (-1, dim))])
    return ModelSignature(inputs=sequence, outputs=sequence)


def pip_requirements() -> list[str]:
    pins = []
    for package in _REQUIREMENTS:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def log_adapter_model(adapter_dir: Path, run_id: str, tracking_uri: str, registered_model_name: str | None = None):
    """Log the adapter in ``run_id`` (at ``tracking_uri``) as a pyfunc named ``aam``; returns
    MLflow's ModelInfo."""
    adapter_dir = Path(adapter_dir)
    dim = adapter_dim(adapter_dir)
    weights = adapter_dir / "adapter.safetensors"
    if not weights.exists():
        raise ModelError(f"{weights}: adapter weights missing (did the train stage run?)")
    # Only the adapter's own two files travel: the train stage keeps its task heads next to them.
    # mlflow.end_run() drops MLFLOW_RUN_ID from the environment; under Kubeflow that variable
    # names the pipeline's parent run, which later logging still needs.
    injected_run = os.environ.get("MLFLOW_RUN_ID")
    try:
        return _log_model(adapter_dir, dim, run_id, tracking_uri, registered_model_name)
    finally:
        if injected_run:
            os.environ["MLFLOW_RUN_ID"] = injected_run


def _log_model(adapter_dir: Path, dim: int, run_id: str, tracking_uri: str, registered_model_name: str | None):
    from latentanon.tracking.runs import fluent_uri

    with tempfile.TemporaryDirectory() as staging, fluent_uri(tracking_uri), mlflow.start_run(run_id=run_id):
        packed = Path(staging) / ADAPTER_ARTIFACT
        packed.mkdir()
        for name in ADAPTER_FILES:
            shutil.copy2(adapter_dir / name, packed / name)
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=AAMPyfunc(),
            artifacts={ADAPTER_ARTIFACT: str(packed)},
            signature=signature(dim),
            input_example=np.zeros((2, dim), dtype=np.float32),
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
        )
