"""The typed, frozen parameters of every stage, read once from params.yaml at the entry point."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from latentanon._configtools import ConfigError, from_dict, sections_hash, to_dict
from latentanon.data.config import DataConfig, ValidateConfig
from latentanon.encoders.config import ExtractConfig, PretrainConfig
from latentanon.evaluation.config import BiasConfig, EvaluateConfig
from latentanon.layout import Layout, PathsConfig
from latentanon.methods.config import TrainConfig
from latentanon.tracking.config import RENAMED_KEYS, GateConfig, TrackedParams, TrackingConfig
from latentanon.tuning.config import SearchParams, TuneConfig

__all__ = ["ConfigError", "Params", "PathsConfig", "Layout", "load_params", "params_from_dict"]


@dataclass(frozen=True)
class Params:
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    pretrain_encoder: PretrainConfig = field(default_factory=PretrainConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    audit_bias: BiasConfig = field(default_factory=BiasConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict:
        return to_dict(self)

    def section_hash(self, *sections: str) -> str:
        """A short stable hash of some sections, to tag outputs with the params that made them."""
        return sections_hash({s: getattr(self, s) for s in sections})

    def tracked(self) -> TrackedParams:
        """The sections the tracking layer reads, and every param in plain form for MLflow."""
        return TrackedParams(tracking=self.tracking, gate=self.gate, plain=self.to_dict())

    def for_search(self) -> SearchParams:
        """The sections the tune stage reads."""
        return SearchParams(tune=self.tune, train=self.train, evaluate=self.evaluate, gate=self.gate)


def _set_override(tree: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like section.key=value")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    if len(keys) < 2 or not all(keys):
        raise ConfigError(f"override {assignment!r} must name section.key")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {key} is not a section")
    node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else ""


# Keys an earlier release named otherwise, per section: old -> new (readable for one release).
DEPRECATED_KEYS = {"gate": RENAMED_KEYS}


def _renamed(tree: dict) -> dict:
    """``tree`` with every deprecated key under its new name, each with a DeprecationWarning. A
    section that sets both names is refused: which one was meant cannot be told."""
    for section, renames in DEPRECATED_KEYS.items():
        block = tree.get(section)
        if not isinstance(block, dict):
            continue
        for old, new in renames.items():
            if old not in block:
                continue
            if new in block:
                raise ConfigError(f"{section}.{old} is the old name of {section}.{new}; set only {section}.{new}")
            warnings.warn(
                f"{section}.{old} is deprecated and will be refused in the next release: name it {section}.{new}",
                DeprecationWarning,
                stacklevel=3,
            )
            block[new] = block.pop(old)
    return tree


def params_from_dict(tree: dict, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    tree = copy.deepcopy(tree or {})
    for assignment in overrides:
        _set_override(tree, assignment)
    return from_dict(Params, _renamed(tree))


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read a params file (safe YAML), apply ``section.key=value`` overrides, type-check everything."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        return params_from_dict(tree, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
