"""The trained method (any registered anonymizer) as an MLflow pyfunc model: one video's feature
sequence (T, d) in, its anonymized sequence (T, d) out. The method's own files (method.json +
method.safetensors, or a legacy adapter's adapter.safetensors + config.json) travel as the model's
artifacts, so the registry holds exactly what ``latentanon.methods.registry.load_method`` loads.

The model carries the latentanon package itself as a code path (``code/latentanon``), so
``mlflow models serve -m models:/<name>@champion`` works in an environment that has the
requirements below but no latentanon: nothing has to come from a package index that does not
know the project."""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
from mlflow.pyfunc.model import PythonModel

from latentanon._files import read_json
from latentanon.errors import ModelError

ADAPTER_ARTIFACT = "adapter"  # the method files' folder in a logged model: every release's versions have it
MODEL_NAME_IN_RUN = "method"  # the logged model's path in its run (earlier releases: "aam")
# What loading and running any method needs (latentanon itself travels as code), pinned to the
# versions that trained it. Listed explicitly: letting MLflow infer them loads the model in a
# subprocess, which costs seconds per log.
_REQUIREMENTS = (
    "torch",
    "numpy",
    "pandas",
    "safetensors",
    "scikit-learn",
    "concept-erasure",
    "tqdm",
    "pyyaml",
    "cloudpickle",
)
PROJECT_PACKAGE = "latentanon"


class MethodPyfunc(PythonModel):
    """Wraps any saved ``latentanon.methods`` method; loaded from the model's ``adapter`` artifact."""

    def load_context(self, context) -> None:
        from latentanon.methods.registry import load_method

        self.method_dir = Path(context.artifacts[ADAPTER_ARTIFACT])
        self.method = load_method(self.method_dir)

    def predict(self, context, model_input, params=None):
        sequence = np.asarray(model_input, dtype=np.float32)
        if sequence.ndim != 2 or sequence.shape[-1] != self.method.dim:
            raise ModelError(
                f"{self.method.name} model expects one (T, {self.method.dim}) feature sequence, got shape {sequence.shape}"
            )
        return self.method.transform_sequence(sequence, "clips")


AAMPyfunc = MethodPyfunc  # the name models logged before the method interface refer to


def _method_meta(method_dir: Path) -> tuple[Path, dict]:
    from latentanon.methods.base import METHOD_JSON

    method_dir = Path(method_dir)
    config_path = method_dir / METHOD_JSON
    if not config_path.exists():
        config_path = method_dir / "config.json"
    if not config_path.exists():
        raise ModelError(f"{method_dir}: no method.json or config.json (did the train stage run?)")
    return config_path, read_json(config_path, ModelError)


def input_dim(method_dir: Path) -> int:
    """The input feature width of the method saved in ``method_dir`` (method.json, or a legacy config.json)."""
    config_path, meta = _method_meta(method_dir)
    try:
        return int(meta["dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{config_path}: no usable 'dim' entry: {exc}") from exc


def output_dim(method_dir: Path) -> int:
    """The width of the method's output (a bottleneck publishes fewer dimensions than it reads)."""
    _, meta = _method_meta(method_dir)
    return int(meta.get("output_dim") or input_dim(method_dir))


def signature(dim: int, out_dim: int | None = None):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    # Unnamed tensor specs: the model then receives and returns a bare (T, d) array.
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, dim))])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, out_dim or dim))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def pip_requirements() -> list[str]:
    pins = []
    for package in _REQUIREMENTS:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def stage_project_code(staging: Path) -> Path:
    """A clean copy of the installed latentanon package (sources only, no bytecode) under
    ``staging``: the code path the logged model carries."""
    import latentanon

    source = Path(latentanon.__file__).resolve().parent
    target = Path(staging) / "code" / PROJECT_PACKAGE
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def log_method_model(method_dir: Path, run_id: str, tracking_uri: str, registered_model_name: str | None = None):
    """Log the method saved in ``method_dir`` in ``run_id`` (at ``tracking_uri``) as a pyfunc
    named ``method``; returns MLflow's ModelInfo."""
    from latentanon.methods.registry import method_files

    method_dir = Path(method_dir)
    dim = input_dim(method_dir)
    for name in method_files(method_dir):
        if not (method_dir / name).exists():
            raise ModelError(f"{method_dir / name}: method file missing (did the train stage run?)")
    # Only the method's own files travel: the train stage keeps task heads and checkpoints next to them.
    # mlflow.end_run() drops MLFLOW_RUN_ID from the environment; under Kubeflow that variable
    # names the pipeline's parent run, which later logging still needs.
    injected_run = os.environ.get("MLFLOW_RUN_ID")
    try:
        return _log_model(method_dir, dim, run_id, tracking_uri, registered_model_name)
    finally:
        if injected_run:
            os.environ["MLFLOW_RUN_ID"] = injected_run


def _log_model(method_dir: Path, dim: int, run_id: str, tracking_uri: str, registered_model_name: str | None):
    from latentanon.tracking.runs import fluent_uri

    with tempfile.TemporaryDirectory() as staging, fluent_uri(tracking_uri), mlflow.start_run(run_id=run_id):
        packed = Path(staging) / ADAPTER_ARTIFACT
        packed.mkdir()
        from latentanon.methods.registry import method_files

        for name in method_files(method_dir):
            shutil.copy2(method_dir / name, packed / name)
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=MethodPyfunc(),
            artifacts={ADAPTER_ARTIFACT: str(packed)},
            signature=signature(dim, output_dim(method_dir)),
            input_example=np.zeros((2, dim), dtype=np.float32),
            pip_requirements=pip_requirements(),
            code_paths=[str(stage_project_code(Path(staging)))],
            registered_model_name=registered_model_name,
        )
