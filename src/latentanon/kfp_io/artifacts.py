"""Artifacts by role: where each lives in the stage layout, store pointers, the error type."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latentanon.config import Layout
from latentanon.errors import LatentanonError

STORE_POINTER = "store.json"
BENCHMARK_DIR = "data/benchmark"  # data.root inside a workspace
STORE_ROLES = {"features": "features_uri", "anonymized": "anonymized_uri"}
REPORT_SUFFIX = "_report"

APPROVED = "approved"
REJECTED = "rejected"


class ArtifactError(LatentanonError):
    """An input artifact that does not hold what its role needs, or a missing stage output."""


def is_remote_uri(uri: str) -> bool:
    return "://" in (uri or "")


def role_location(role: str, layout: Layout) -> Path:
    """Where an artifact of this role lives inside the workspace layout."""
    fixed = {
        "data": layout.data_root,
        "manifests": layout.manifests,
        "encoder": layout.encoder_dir,
        "method": layout.method_dir,
        "report_md": layout.reports / "report.md",
        "metrics_json": layout.reports / "metrics.json",
    }
    if role in fixed:
        return fixed[role]
    if role in STORE_ROLES:
        uri = getattr(layout, STORE_ROLES[role])
        if is_remote_uri(uri):
            raise ArtifactError(f"role {role!r} is the remote store {uri}; it has no local location")
        return Path(uri)
    if role.endswith(REPORT_SUFFIX) and len(role) > len(REPORT_SUFFIX):
        return layout.report_dir(role[: -len(REPORT_SUFFIX)])
    raise ArtifactError(f"unknown artifact role {role!r}")


def _artifact_path(artifact: Any, role: str) -> Path:
    path = getattr(artifact, "path", None)
    if not path:
        raise ArtifactError(f"artifact for role {role!r} has no local path (uri={getattr(artifact, 'uri', None)!r})")
    return Path(path)


def read_store_pointer(path: Path) -> str | None:
    """The remote store URI an artifact points at, or None when the artifact holds the store."""
    pointer = path / STORE_POINTER
    if not pointer.is_file():
        return None
    try:
        uri = json.loads(pointer.read_text())["uri"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{pointer}: not a store pointer ({{'uri': ...}}): {exc}") from exc
    if not is_remote_uri(uri):
        raise ArtifactError(f"{pointer}: store pointer {uri!r} is not a remote URI")
    return uri


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _set_metadata(artifact: Any, **values: Any) -> None:
    metadata = getattr(artifact, "metadata", None)
    if isinstance(metadata, dict):
        metadata.update(values)


# The KFP run page lists Metrics flat: keep the headline numbers (at most two levels deep, e.g.
# ``utility.ar_top1``), not every per-seed or per-attribute breakdown (those are in MLflow).
METRICS_MAX_DEPTH = 2


def scalar_metrics(summary: Mapping, prefix: str = "", max_depth: int | None = None) -> dict[str, float]:
    """Every finite number in a nested summary, keyed by its dotted path (down to ``max_depth``)."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if max_depth is None or max_depth > 1:
                out.update(scalar_metrics(value, f"{name}.", None if max_depth is None else max_depth - 1))
        elif isinstance(value, bool) or isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def log_metrics(metrics: Any, summary: Mapping, max_depth: int = METRICS_MAX_DEPTH) -> dict[str, float]:
    """The curated headline numbers as KFP Metrics (the full summary goes to MLflow)."""
    values = scalar_metrics(summary, max_depth=max_depth)
    for name, value in sorted(values.items()):
        metrics.log_metric(name, value)
    return values
