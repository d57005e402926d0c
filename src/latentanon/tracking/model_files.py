"""Loading a registered method without executing anything from the registry.

The registry holds the method as an MLflow pyfunc (for ``mlflow models serve``); its
``python_model.pkl`` is a pickle, and unpickling it runs whatever code it names. ``anonymize``
never does: it downloads only the method's own files (``method.json`` + safetensors, the
model's ``artifacts/adapter`` folder), checks each file's sha256 against the gate's decision
record, and loads them with ``latentanon.methods.registry.load_method`` (JSON and safetensors
only). An extra file, a missing one or a changed digest is refused, naming the version and file.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from latentanon.errors import ModelError
from latentanon.tracking.pyfunc import ADAPTER_ARTIFACT

ARTIFACTS_DIR = "artifacts"


def file_sha256(path: Path) -> str | None:
    """A file's sha256, None when there is no such file."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def method_digest(method_dir: Path) -> str:
    """sha256 over the saved method's files: one registry version per distinct method."""
    from latentanon.methods.registry import method_files

    digest = hashlib.sha256()
    for name in method_files(method_dir):
        path = Path(method_dir) / name
        if not path.is_file():
            raise ModelError(f"{path}: method file missing (did the train stage run?)")
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def download_method_files(client, model_version, dest: Path) -> Path:
    """The version's method folder (and nothing else of the model) downloaded under ``dest``."""
    import mlflow

    where = f"version {model_version.version} of {model_version.name}"
    try:
        root = client.get_model_version_download_uri(model_version.name, str(model_version.version))
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{root.rstrip('/')}/{ARTIFACTS_DIR}/{ADAPTER_ARTIFACT}",
            dst_path=str(dest),
            tracking_uri=client.tracking_uri,
        )
    except Exception as exc:  # any failure to fetch is the same problem for the user
        raise ModelError(f"{where}: cannot download its method files: {exc}") from exc
    return Path(local)


def check_method_files(directory: Path, approved_files: dict | None, where: str) -> None:
    """Exactly the approved files, each with its approved sha256."""
    if not isinstance(approved_files, dict) or not approved_files:
        raise ModelError(f"{where}: the gate decision record lists no method files")
    present = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    for name in present:
        if name not in approved_files:
            raise ModelError(
                f"{where}: file {name!r} is not one of the approved method files "
                f"{sorted(approved_files)}; refusing to load"
            )
    for name, digest in sorted(approved_files.items()):
        path = directory / name
        if not path.is_file():
            raise ModelError(f"{where}: approved method file {name!r} is missing")
        actual = file_sha256(path) or ""
        if actual != digest:
            raise ModelError(
                f"{where}: file {name!r} has sha256 {actual[:12]}..., the gate approved "
                f"{str(digest)[:12]}...; refusing to load a changed method"
            )


def load_approved_method(client, model_version, record: dict, work_dir: Path | None = None):
    """The method of ``model_version`` loaded from its checked files; returns (method, folder)."""
    from latentanon.methods.registry import load_method

    where = f"version {model_version.version} of {model_version.name}"
    dest = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="latentanon-method-"))
    directory = download_method_files(client, model_version, dest)
    check_method_files(directory, record.get("adapter_files"), where)
    digest = method_digest(directory)
    if digest != record.get("adapter_sha256"):
        raise ModelError(
            f"{where}: method files digest {digest[:12]}... differs from the approved "
            f"{str(record.get('adapter_sha256'))[:12]}..."
        )
    method = load_method(directory)
    if method.fingerprint() != record.get("method_fingerprint"):
        raise ModelError(
            f"{where}: the loaded method's fingerprint {method.fingerprint()} is not the approved "
            f"{record.get('method_fingerprint')}"
        )
    return method, directory
