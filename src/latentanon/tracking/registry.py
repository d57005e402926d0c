"""The MLflow model registry side: register the trained method as @candidate, and apply a
registered, gate-approved version to a feature store (``latentanon anonymize``)."""

from __future__ import annotations

import re
from pathlib import Path

from latentanon.errors import ModelError
from latentanon.layout import Layout
from latentanon.tracking import runs
from latentanon.tracking.config import TrackedParams
from latentanon.tracking.model_files import method_digest
from latentanon.tracking.pyfunc import log_method_model
from latentanon.tracking.uri import tracking_uri

CANDIDATE = "candidate"
CHAMPION = "champion"
TAG_DECISION = "gate.decision"
APPROVED = "approved"
REJECTED = "rejected"
PENDING = "pending"
TAG_ADAPTER_SHA = "latentanon.adapter_sha256"
TAG_SOURCE_RUN = "latentanon.source_run_id"
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[\w\-]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


def find_version_by_digest(client, model_name: str, digest: str):
    try:
        versions = client.search_model_versions(f"name='{model_name}'")
    except Exception:  # no such registered model yet
        return None
    for version in versions:
        if version.tags.get(TAG_ADAPTER_SHA) == digest:
            return version
    return None


def register_candidate(tracked: TrackedParams, layout: Layout, client=None) -> dict:
    """Log the method saved in ``layout.method_dir`` as a pyfunc model in a nested run of the pipeline
    run, register it as a new version of ``tracking.model_name`` and point @candidate at it.
    A method already registered (same file digest) is not registered twice: a re-run reuses it."""
    client = client or runs.client_for(tracked.tracking, layout)
    name = tracked.tracking.model_name
    digest = method_digest(layout.method_dir)
    existing = find_version_by_digest(client, name, digest)
    if existing is not None:
        version, run_id, reused = str(existing.version), existing.tags.get(TAG_SOURCE_RUN, ""), True
    else:
        parent = runs.pipeline_run_id(tracked, layout, client)
        run_id = runs.start_child_run(client, parent, "register-candidate", {runs.TAG_STAGE: "gate"})
        info = log_method_model(layout.method_dir, run_id, client.tracking_uri, registered_model_name=name)
        if info.registered_model_version is None:
            raise ModelError(f"MLflow did not register {name!r} from {layout.method_dir}")
        version, reused = str(info.registered_model_version), False
        for key, value in {TAG_ADAPTER_SHA: digest, TAG_SOURCE_RUN: run_id, TAG_DECISION: PENDING}.items():
            client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CANDIDATE, version)
    return {
        "model_name": name,
        "version": version,
        "run_id": run_id,
        "adapter_sha256": digest,
        "reused": reused,
        "model_uri": f"models:/{name}/{version}",
    }


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of ``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
    match = _ALIAS_URI.match(model_uri)
    if match:
        return match["name"], match["alias"], None
    match = _VERSION_URI.match(model_uri)
    if match:
        return match["name"], None, match["version"]
    raise ModelError(f"model URI {model_uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")


def resolve_version(client, model_uri: str):
    name, alias, version = parse_model_uri(model_uri)
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except Exception as exc:
        hint = ""
        if alias == CHAMPION:
            hint = (
                f" @{CHAMPION} exists only after the gate approved a method; `latentanon verdict` "
                "says what the last gate decided and why."
            )
        raise ModelError(f"{model_uri}: not found in the registry at {client.tracking_uri}: {exc}.{hint}") from exc


def require_approved(model_version, model_uri: str) -> None:
    decision = model_version.tags.get(TAG_DECISION)
    if decision != APPROVED:
        raise ModelError(
            f"{model_uri} (version {model_version.version} of {model_version.name}) was not approved by "
            f"the gate ({TAG_DECISION}={decision or 'missing'}); refusing to anonymize with it. Only a "
            f"gate-approved version (the one at @{CHAMPION}) may produce features to share; "
            "`latentanon verdict` says why the gate decided as it did"
        )


def approved_record(model_version, model_uri: str) -> dict:
    """The gate's decision record of an approved version, its signature checked where a key is set.

    The ``gate.decision`` tag is not trusted alone: the record must say approved, name this version,
    and (with ``LATENTANON_GATE_SIGNING_KEY``) carry the gate's signature."""
    from latentanon.tracking import decision_record

    require_approved(model_version, model_uri)
    where = f"{model_uri} (version {model_version.version} of {model_version.name})"
    record, signature = decision_record.read_record(model_version.tags, where)
    decision_record.verify(record, signature, decision_record.signing_key(), where)
    if (
        record.get("decision") != APPROVED
        or str(record.get("version")) != str(model_version.version)
        or record.get("model_name") != model_version.name
    ):
        raise ModelError(
            f"{where}: the gate decision record says {record.get('decision')!r} for version "
            f"{record.get('version')} of {record.get('model_name')}; not an approval of this version"
        )
    if not record.get("encoder"):
        raise ModelError(f"{where}: the decision record names no encoder; the gate cannot have measured it")
    if record.get("adapter_sha256") != model_version.tags.get(TAG_ADAPTER_SHA):
        raise ModelError(f"{where}: the decision record's method digest does not match the registered method")
    return record


def anonymize_with_registered_model(model_uri: str, src: str, dst: str, uri: str | None = None) -> dict:
    """Load a registered method (``models:/<name>@champion`` or any alias/version), refuse it unless
    the gate's decision record approves exactly its files, and write the release ``dst`` from ``src``.

    Nothing from the registry is executed: the method's files are downloaded, checked against the
    record's digests and loaded as JSON + safetensors (``latentanon.tracking.model_files``). The
    source features must come from the encoder the gate measured.

    ``uri``: the registry (the CLI passes the one tracking rule's answer for its params file);
    None applies that rule with no params (MLFLOW_TRACKING_URI, else ./mlflow.db).
    """
    import tempfile

    from latentanon.methods.apply import anonymize_store
    from latentanon.tracking.model_files import load_approved_method

    uri = uri or tracking_uri("", ".")
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        raise ModelError(
            f"{uri}: no MLflow registry there (set MLFLOW_TRACKING_URI, or run the pipeline "
            "first; the gate registers the method there)"
        )
    client = runs.connect(uri)
    model_version = resolve_version(client, model_uri)
    record = approved_record(model_version, model_uri)
    with tempfile.TemporaryDirectory(prefix="latentanon-method-") as work:
        method, _ = load_approved_method(client, model_version, record, Path(work))
        summary = anonymize_store(None, src, dst, method=method, expected_encoder=record.get("encoder"))
    return {
        "model_uri": model_uri,
        "model_name": model_version.name,
        "version": str(model_version.version),
        "source": src,
        "destination": dst,
        "anonymized": summary,
    }
