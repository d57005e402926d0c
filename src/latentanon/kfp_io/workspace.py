"""The scratch workspace a component runs its stage in, laid out like a DVC checkout."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentanon._files import write_text_atomic
from latentanon.config import Layout, Params, params_from_dict
from latentanon.kfp_io.artifacts import (
    BENCHMARK_DIR,
    STORE_POINTER,
    STORE_ROLES,
    ArtifactError,
    _artifact_path,
    _as_list,
    _set_metadata,
    is_remote_uri,
    log_metrics,
    read_store_pointer,
    role_location,
)
from latentanon.kfp_io.run_params import parse_params

# Where a component may find the settings that do not belong in params (they differ per cluster).
ENV_SCRATCH = "LATENTANON_SCRATCH"  # roomy scratch volume (an emptyDir in the pod)
ENV_MLFLOW_FALLBACK = "LATENTANON_MLFLOW_TRACKING_URI"  # used only when no MLFLOW_TRACKING_URI is set


@dataclass
class StageWorkspace:
    """A scratch DVC-like checkout for one component run.

    ``inputs`` maps a role to an input artifact or, for fan-in steps (``dsl.Collected``), a list
    of artifacts whose contents are merged. ``outputs`` maps a role to an output artifact.
    """

    params_yaml: str
    overrides: Sequence[str]
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    root: Path | None = None
    _params: Params | None = None
    _layout: Layout | None = None
    _owns_root: bool = False
    _scopes_before: dict[str, str | None] | None = None

    @property
    def params(self) -> Params:
        """The step's params, with paths into this workspace (set when the workspace is entered)."""
        if self._params is None:
            raise ArtifactError("the stage workspace has not been entered yet: use it as a context manager")
        return self._params

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            raise ArtifactError("the stage workspace has not been entered yet: use it as a context manager")
        return self._layout

    # -- set-up ------------------------------------------------------------------------------

    def __enter__(self) -> StageWorkspace:
        _apply_environment_defaults()
        tree, overrides = parse_params(self.params_yaml, self.overrides)
        if self.root is None:
            scratch = os.environ.get(ENV_SCRATCH)
            base = scratch if scratch and Path(scratch).is_dir() else None
            self.root = Path(tempfile.mkdtemp(prefix="latentanon-kfp-", dir=base))
            self._owns_root = True
        try:
            self._prepare(tree, overrides)
        except BaseException:
            self.__exit__(None, None, None)  # no half-built workspace is left behind
            raise
        return self

    def _prepare(self, tree: dict, overrides: list[str]) -> None:
        assert self.root is not None  # __enter__ made one when none was given
        self.root.mkdir(parents=True, exist_ok=True)
        forced = [f"paths.workdir={json.dumps(str(self.root))}", f"data.root={BENCHMARK_DIR}"]
        forced += self._store_overrides(tree, overrides)
        self._params = params_from_dict(tree, [*overrides, *forced])
        self._layout = Layout.from_params(self._params)
        self._scope_remote_stores()
        for role, artifact in self.inputs.items():
            self._stage_in(role, artifact)

    def _store_overrides(self, tree: dict, overrides: list[str]) -> list[str]:
        """Remote stores stay where params put them; local ones live in the workspace."""
        configured = params_from_dict(tree, overrides).paths
        forced = []
        for role, field_name in STORE_ROLES.items():
            uri = getattr(configured, field_name)
            pointed = {
                p
                for a in _as_list(self.inputs.get(role))
                if (p := read_store_pointer(_artifact_path(a, role))) is not None
            }
            if len(pointed) > 1:
                raise ArtifactError(f"input artifacts for {role!r} point at different stores: {sorted(pointed)}")
            if pointed:
                uri = pointed.pop()
            if not is_remote_uri(uri):
                uri = ""
            forced.append(f"paths.{field_name}={json.dumps(uri)}" if uri else f"paths.{field_name}=")
        return forced

    def _stage_in(self, role: str, artifact: Any) -> None:
        if role in STORE_ROLES and is_remote_uri(getattr(self.layout, STORE_ROLES[role])):
            return  # the stage reads the remote store directly
        sources = [_artifact_path(a, role) for a in _as_list(artifact)]
        for src in sources:
            if not src.exists():
                raise ArtifactError(f"input artifact for {role!r} is missing: {src}")
        dst = role_location(role, self.layout)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if len(sources) == 1 and role not in self.outputs:
            # Read-only input: a link is enough and costs nothing for large data.
            dst.symlink_to(sources[0].resolve(), target_is_directory=sources[0].is_dir())
            return
        # Fan-in, or an input the stage also updates: work on a private copy, never on the
        # upstream task's artifact.
        for src in sources:
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)

    # -- finishing ---------------------------------------------------------------------------

    def publish(self, summary: Mapping | None, metrics: Any = None) -> dict:
        """Copy what the stage wrote into the output artifacts and log its numbers as KFP metrics."""
        summary = dict(summary or {})
        for role, artifact in self.outputs.items():
            self._stage_out(role, artifact)
        if metrics is not None:
            log_metrics(metrics, summary)
        return summary

    def _stage_out(self, role: str, artifact: Any) -> None:
        dst = _artifact_path(artifact, role)
        if role in STORE_ROLES:
            uri = getattr(self.layout, STORE_ROLES[role])
            if is_remote_uri(uri):
                dst.mkdir(parents=True, exist_ok=True)
                write_text_atomic(dst / STORE_POINTER, json.dumps({"uri": uri}) + "\n")
                _set_metadata(artifact, store_uri=uri)
                return
        src = role_location(role, self.layout)
        if role in STORE_ROLES and not src.exists():
            src.mkdir(parents=True)  # an extract worker whose shards were all done elsewhere
        if not src.exists():
            raise ArtifactError(f"the stage did not write {src} (output artifact {role!r})")
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=False)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        _set_metadata(artifact, role=role)

    def _scope_remote_stores(self) -> None:
        """Name each remote store as its credential scope, so the pod's per-store key signs for it."""
        from latentanon.features.s3 import scope_variable

        self._scopes_before = {}
        for scope, field_name in STORE_SCOPES.items():
            uri = getattr(self.layout, field_name)
            if str(uri).startswith("s3://"):
                variable = scope_variable(scope, "URI")
                self._scopes_before[variable] = os.environ.get(variable)
                os.environ[variable] = uri

    def __exit__(self, *exc_info) -> None:
        for variable, before in (self._scopes_before or {}).items():
            if before is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = before
        self._scopes_before = None
        if self._owns_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


# the credential scope (features.s3.CREDENTIAL_SCOPES) of each store's layout field
STORE_SCOPES = {"FEATURES": "features_uri", "RELEASE": "anonymized_uri"}


def _apply_environment_defaults() -> None:
    """Offline switches as in the CLI, and the cluster's MLflow URI when no integration set one."""
    from latentanon.environment import OFFLINE_ENV

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    fallback = os.environ.get(ENV_MLFLOW_FALLBACK)
    if fallback and not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = fallback
