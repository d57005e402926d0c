"""Where every stage reads and writes, and the order of the stages.

The lowest config module: every layer that needs a path takes a ``Layout``; nothing here imports
a layer of the project, so any layer may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The pipeline's stages in order (DVC's dvc.yaml and the Kubeflow pipeline follow it).
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


@dataclass(frozen=True)
class PathsConfig:
    workdir: str = "."  # every stage output lives under it (DVC outs are relative to it)
    features_uri: str = ""  # empty: <workdir>/features; may be s3://bucket/prefix
    anonymized_uri: str = ""  # empty: <workdir>/features_anon; may be s3://bucket/prefix


@dataclass(frozen=True)
class Layout:
    """Where each stage reads and writes, all derived from the params."""

    workdir: Path
    data_root: Path
    features_uri: str
    anonymized_uri: str

    @classmethod
    def from_params(cls, params) -> Layout:
        """From the whole ``Params`` (only ``paths`` and ``data.root`` are read): the entry points
        build the layout once and hand it down with each layer's own section."""
        workdir = Path(params.paths.workdir)
        data_root = Path(params.data.root)
        if not data_root.is_absolute():
            data_root = workdir / data_root
        return cls(
            workdir=workdir,
            data_root=data_root,
            features_uri=params.paths.features_uri or str(workdir / "features"),
            anonymized_uri=params.paths.anonymized_uri or str(workdir / "features_anon"),
        )

    @property
    def manifests(self) -> Path:
        return self.workdir / "data" / "manifests"

    @property
    def encoder_dir(self) -> Path:
        return self.workdir / "models" / "encoder"

    @property
    def method_dir(self) -> Path:
        return self.workdir / "models" / "method"

    @property
    def reports(self) -> Path:
        return self.workdir / "reports"

    def report_dir(self, stage: str) -> Path:
        return self.reports / stage
