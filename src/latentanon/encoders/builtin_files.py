"""The built-in encoder's directory: model.safetensors and config.json written atomically, loaded
and checked against the identity they record, and what kind of encoder a directory holds."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file

from latentanon._configtools import ConfigError, from_dict
from latentanon._files import atomic_path, write_json_atomic
from latentanon.encoders.builtin import BuiltinConfig, VideoEncoder
from latentanon.errors import ModelError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def file_sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def save_builtin(encoder: VideoEncoder, directory: str | Path, extra: dict | None = None) -> str:
    """Write model.safetensors and config.json atomically; return the encoder identity."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp_weights:
        save_file(weights, str(tmp_weights), metadata={"format": "pt"})
        identity = "builtin:" + file_sha256(tmp_weights)[:16]
    meta = {"kind": "builtin", "identity": identity, "architecture": asdict(encoder.config), **(extra or {})}
    write_json_atomic(directory / CONFIG_FILE, meta)
    return identity


def load_builtin(directory: str | Path) -> tuple[VideoEncoder, dict]:
    """The frozen encoder (eval mode, no gradients) and its config.json contents."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: built-in encoder directory not found (run the pretrain_encoder stage)")
    weights_path, config_path = directory / WEIGHTS_FILE, directory / CONFIG_FILE
    for path in (weights_path, config_path):
        if not path.exists():
            raise ModelError(f"{path}: built-in encoder file missing")
    try:
        meta = json.loads(config_path.read_text())
        config = from_dict(BuiltinConfig, meta["architecture"], f"{config_path}:architecture")
    except (ValueError, KeyError, ConfigError) as exc:
        raise ModelError(f"{config_path}: not a built-in encoder config ({exc})") from exc
    identity = "builtin:" + file_sha256(weights_path)[:16]
    if meta.get("identity") != identity:
        raise ModelError(f"{weights_path}: weights do not match the identity recorded in {config_path}")
    encoder = VideoEncoder(config)
    try:
        encoder.load_state_dict(load_file(str(weights_path)))
    except RuntimeError as exc:
        raise ModelError(f"{weights_path}: does not match {config_path}: {exc}") from exc
    encoder.eval().requires_grad_(False)
    return encoder, meta


def is_builtin_dir(directory: str | Path) -> bool:
    """True when ``directory`` holds a built-in encoder's config.json."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("kind") == "builtin"
    except ValueError:
        return False


def hf_reference(directory: str | Path) -> Path | None:
    """The Hugging Face model directory an encoder directory points to (pretrain with encoder: hf:<dir>)."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except ValueError:
        return None
    return Path(meta["source"]) if meta.get("kind") == "hf_ref" and meta.get("source") else None
