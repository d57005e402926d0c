"""Every anonymizer by name. Adding a method is one module (a ``Method`` subclass) plus one entry
here; entries are import paths, so nothing is imported until a method is used.

Names may carry one argument after ``@`` (``noise@0.2``): the class reads it from ``name``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable
from pathlib import Path

from latentanon.errors import ModelError
from latentanon.methods.base import METHOD_JSON, METHOD_STATE, Method
from latentanon.methods.config import TrainConfig

METHODS: dict[str, str] = {
    "identity": "latentanon.methods.identity:IdentityMethod",
    "rotation": "latentanon.methods.rotation:RotationMethod",
    "noise": "latentanon.methods.noise:NoiseMethod",
    "leace": "latentanon.methods.leace:LeaceMethod",
    "adversarial": "latentanon.methods.adversarial:AdversarialMethod",
    "paper": "latentanon.methods.paper:PaperMethod",
    "paper_batch": "latentanon.methods.paper:PaperBatchMethod",
    "bottleneck": "latentanon.methods.bottleneck:BottleneckMethod",
    "distil": "latentanon.methods.distil:DistilMethod",
    "fisher": "latentanon.methods.fisher:FisherMethod",
}
# Legacy adapter directories (adapter.safetensors + config.json, no method.json) hold a paper AAM.
LEGACY_ADAPTER_FILES = ("adapter.safetensors", "config.json")


def base_name(name: str) -> str:
    """``noise@0.5`` -> ``noise``."""
    return name.split("@", 1)[0]


def method_class(name: str) -> type[Method]:
    base = base_name(name)
    if base not in METHODS:
        raise ModelError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))} (noise as noise@<scale>)")
    module, _, attribute = METHODS[base].partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    if "@" in name and not cls.takes_argument:
        raise ModelError(f"method {name!r}: {base} takes no argument after '@'")
    return cls


def create_method(name: str, train: TrainConfig = TrainConfig()) -> Method:
    """An unfitted method ``name`` with the knobs of ``train``."""
    return method_class(name)(name, train)


def needs_private_labels(name: str) -> bool:
    return method_class(name).needs_private_labels


def expand_names(names: Iterable[str], noise_scales: Iterable[float]) -> list[str]:
    """Configured method names with a bare ``noise`` expanded over the scales, checked."""
    out: list[str] = []
    for name in names:
        method_class(name)  # fails early on an unknown name
        if name == "noise":
            out.extend(f"noise@{scale:g}" for scale in noise_scales)
        else:
            out.append(name)
    return out


def method_files(directory: str | Path) -> tuple[str, ...]:
    """The files that make up a saved method (what the registry and the pyfunc carry)."""
    directory = Path(directory)
    if (directory / METHOD_JSON).exists():
        return (METHOD_JSON, METHOD_STATE)
    return LEGACY_ADAPTER_FILES


def load_method(directory: str | Path) -> Method:
    """The method saved in ``directory`` (by ``Method.save``, or a legacy adapter directory)."""
    directory = Path(directory)
    meta_path = directory / METHOD_JSON
    if not meta_path.exists():
        if all((directory / f).exists() for f in LEGACY_ADAPTER_FILES):
            # through the import table: a static import of paper would close an import cycle
            # (paper -> apply -> registry)
            paper = method_class("paper")
            from_adapter_dir = getattr(paper, "from_adapter_dir")  # noqa: B009 (only PaperMethod has it)
            return from_adapter_dir(directory)
        raise ModelError(f"{meta_path}: no saved method there (did the train stage run?)")
    try:
        meta = json.loads(meta_path.read_text())
        name = str(meta["method"])
        int(meta["dim"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{meta_path}: not a method description: {exc}") from exc
    state_path = directory / METHOD_STATE
    if not state_path.exists():
        raise ModelError(f"{state_path}: method state missing")
    from safetensors.numpy import load_file

    try:
        state = load_file(str(state_path))
    except Exception as exc:  # a torn or foreign file
        raise ModelError(f"{state_path}: unreadable method state: {exc}") from exc
    return method_class(name).restore(name, meta, state, str(meta_path))
