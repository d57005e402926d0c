"""The one rule for where MLflow lives, used by every stage, ``anonymize``, ``verdict`` and
``make mlflow-ui``:

1. the ``MLFLOW_TRACKING_URI`` environment variable, when set (Kubeflow's MLflow integration and
   MLflow's own tools set it; a user exporting it means it for every command);
2. else ``tracking.tracking_uri`` from the params file;
3. else the embedded database ``sqlite:///<paths.workdir>/mlflow.db`` (no server needed).

Importing this module does not import MLflow, so the CLI can answer ``latentanon tracking-uri``
at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from latentanon.environment import TRACKING_URI_ENV

__all__ = ["DEFAULT_DB", "TRACKING_URI_ENV", "tracking_uri"]
DEFAULT_DB = "mlflow.db"


def tracking_uri(configured: str, workdir: str | os.PathLike, environ: Mapping[str, str] | None = None) -> str:
    """The tracking URI by the rule above; ``configured`` is params' ``tracking.tracking_uri``."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    from_env = (env.get(TRACKING_URI_ENV) or "").strip()
    if from_env:
        return from_env
    if configured and configured.strip():
        return configured.strip()
    return f"sqlite:///{(Path(workdir) / DEFAULT_DB).resolve()}"


def source_of(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """Which rule chose the URI, in words (for the CLI and error messages)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    if (env.get(TRACKING_URI_ENV) or "").strip():
        return f"the {TRACKING_URI_ENV} environment variable"
    if configured and configured.strip():
        return "tracking.tracking_uri in the params file"
    return "the default: mlflow.db in paths.workdir"


def is_local_store(uri: str) -> bool:
    """True for a database or folder the MLflow UI can open directly (not an http(s) server)."""
    return not uri.startswith(("http://", "https://", "databricks"))
