"""The promotion gate: decide on the registered @candidate from reports/metrics.json, and promote
it to @champion only when approved.

``decide`` and ``promote`` are separate so a Kubeflow pipeline can branch on the decision
(``dsl.If(decision == "approved")``); ``run_gate`` (the DVC stage) does register + decide +
promote. Missing or broken metrics reject the candidate: a failed upstream stage can never let a
model through by leaving the gate without figures. The checks themselves are in
``tracking.gate_checks``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from latentanon._configtools import to_dict
from latentanon._files import write_json_atomic
from latentanon.errors import ModelError
from latentanon.layout import Layout
from latentanon.tracking import decision_record, runs
from latentanon.tracking.config import TrackedParams, TrackingConfig
from latentanon.tracking.gate_checks import PRIVACY, TAG_LEAKAGE, evaluate_checks, figure, read_metrics
from latentanon.tracking.registry import (
    APPROVED,
    CANDIDATE,
    CHAMPION,
    REJECTED,
    TAG_DECISION,
    register_candidate,
)


def current_champion(client, model_name: str, exclude_version: str | None) -> dict | None:
    """The version holding @champion (other than the candidate itself) and its recorded leakage."""
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except Exception:  # no registered model or no champion yet
        return None
    if str(version.version) == str(exclude_version):
        return None
    raw = version.tags.get(TAG_LEAKAGE)
    try:
        leakage = float(raw) if raw is not None else None
    except ValueError:
        leakage = None
    return {"version": str(version.version), "normalized_leakage": leakage}


def _alias_version(client, model_name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except Exception:  # no such model or alias
        return None


def _candidate_version(client, model_name: str) -> str | None:
    return _alias_version(client, model_name, CANDIDATE)


def _version_tags(decision: dict) -> dict[str, str]:
    tags = {
        TAG_DECISION: decision["decision"],
        "gate.reasons": "; ".join(decision["reasons"])[:4000] or "all checks passed",
        "gate.decided_at": decision["decided_at"],
    }
    for check in decision["checks"]:
        if check["value"] is not None:
            tags[f"gate.{check['name']}"] = f"{check['value']:.6g}"
        tags[f"gate.{check['name']}.passed"] = str(check["passed"]).lower()
        if check.get("decided") is not None:
            tags[f"gate.{check['name']}.decided"] = str(check["decided"]).lower()
    for key, value in decision["thresholds"].items():
        tags[f"gate.threshold.{key}"] = json.dumps(value) if not isinstance(value, str) else value
    return tags


def judged_encoder(layout: Layout) -> str | None:
    """The encoder identity of the features the metrics were measured on: the anonymized store's
    index, else the train stage's summary (a Kubeflow gate step gets the train report, not the store)."""
    from latentanon.errors import StoreError
    from latentanon.features.release import encoder_identity
    from latentanon.features.store import FeatureStore

    try:
        found = encoder_identity(FeatureStore(layout.anonymized_uri).read_index().get("meta"))
    except StoreError:
        found = None
    summary = layout.report_dir("train") / "summary.json"
    if found is None and summary.is_file():
        try:
            found = (json.loads(summary.read_text()).get("anonymized") or {}).get("encoder")
        except (json.JSONDecodeError, AttributeError):
            found = None
    return str(found) if found else None


def judged_inputs(
    client, name: str, version: str, layout: Layout, metrics: dict | None, metrics_path: Path
) -> tuple[dict, list[str]]:
    """What the decision binds (the saved method's files and digest, method fingerprint, encoder, metrics
    digest) and the reasons to reject when those do not belong together."""
    from latentanon.methods.registry import load_method, method_files
    from latentanon.tracking.model_files import file_sha256, method_digest
    from latentanon.tracking.registry import TAG_ADAPTER_SHA

    problems = []
    method_dir = layout.method_dir
    try:
        digest = method_digest(method_dir)
        files = {f: file_sha256(method_dir / f) for f in method_files(method_dir)}
        fingerprint = load_method(method_dir).fingerprint()
    except ModelError as exc:
        return {}, [f"method: {exc}"]
    registered = client.get_model_version(name, str(version)).tags.get(TAG_ADAPTER_SHA)
    if registered != digest:
        problems.append(
            f"method: {method_dir} (sha256 {digest[:12]}...) is not the method registered as version "
            f"{version} (sha256 {(registered or 'missing')[:12]}...)"
        )
    measured = ((metrics or {}).get("trained_method") or {}).get("id") if isinstance(metrics, dict) else None
    if metrics is not None and measured != fingerprint:
        problems.append(
            f"metrics: {metrics_path} measured method {measured or 'unnamed'}, not the registered method "
            f"{fingerprint}; evaluate this method before judging it"
        )
    encoder = judged_encoder(layout)
    if encoder is None:
        problems.append(
            "encoder: the identity of the encoder the metrics were measured on is unknown (no "
            "anonymized store index, no train summary)"
        )
    return {
        "adapter_sha256": digest,
        "adapter_files": files,
        "method_fingerprint": fingerprint,
        "encoder": encoder,
        "metrics_sha256": file_sha256(metrics_path),
    }, problems


def decide(
    tracked: TrackedParams, layout: Layout, version: str | None = None, client=None, blocking_problem: str = ""
) -> dict:
    """Approve or reject a registered version (default: the one at @candidate).

    ``blocking_problem`` (e.g. no trained method to register) rejects without judging any
    version: a stale @candidate from an earlier run is never judged in place of a missing one.

    Writes the decision, figures and thresholds as model-version tags and as
    reports/gate/decision.json (also logged to the pipeline run). A rejected version keeps
    @candidate (and loses @champion if it held it); an approved one keeps @candidate until
    ``promote`` moves it to @champion.
    """
    client = client or runs.client_for(tracked.tracking, layout)
    name = tracked.tracking.model_name
    metrics_path = layout.reports / "metrics.json"
    metrics, metrics_problem = read_metrics(metrics_path)
    if blocking_problem:
        version = None
    elif version is None:
        version = _candidate_version(client, name)
    champion = current_champion(client, name, version)
    checks = evaluate_checks(metrics, tracked.gate, champion)
    reasons = [p for p in (blocking_problem, metrics_problem) if p]
    if version is None and not blocking_problem:
        reasons.append(f"no version of {name!r} is registered as @{CANDIDATE}")
    judged: dict = {}
    binding_problems: list[str] = []
    if version is not None:
        judged, binding_problems = judged_inputs(client, name, version, layout, metrics, metrics_path)
    reasons += binding_problems
    reasons += [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    decision = {
        "decision": REJECTED if reasons else APPROVED,
        "model_name": name,
        "version": version,
        "reasons": reasons,
        "checks": [asdict(c) for c in checks],
        # per criterion read from an interval: does the interval lie wholly on one side?
        "decided": {c.name: c.decided for c in checks if c.decided is not None},
        "champion": champion,
        "thresholds": to_dict(tracked.gate),
        "metrics_path": str(metrics_path),
        "decided_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if version is not None:
        record = decision_record.make_record(
            model_name=name,
            version=str(version),
            decision=decision["decision"],
            thresholds=decision["thresholds"],
            decided_at=decision["decided_at"],
            **judged,
        )
        signature = decision_record.sign(record, decision_record.signing_key())
        decision.update(record=record, record_signature=signature)
        tags = {**_version_tags(decision), **decision_record.record_tags(record, signature)}
        stale_signature = decision_record.TAG_SIGNATURE in client.get_model_version(name, version).tags
        if signature is None and stale_signature:  # an earlier signed record must not vouch for this one
            client.delete_model_version_tag(name, version, decision_record.TAG_SIGNATURE)
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        leakage = figure(metrics, f"{PRIVACY}.normalized_leakage")
        if leakage is not None:
            client.set_model_version_tag(name, version, TAG_LEAKAGE, repr(leakage))
        if decision["decision"] == REJECTED and _alias_version(client, name, CHAMPION) == version:
            # A champion re-judged on new metrics and rejected is demoted, so @champion always
            # names an approved version. A rejected candidate keeps @candidate (the latest
            # registered method, tagged gate.decision=rejected): only approval moves an alias.
            client.delete_registered_model_alias(name, CHAMPION)
    out = layout.report_dir("gate") / "decision.json"
    write_json_atomic(out, decision)
    client.log_artifact(runs.pipeline_run_id(tracked, layout, client), str(out), "gate")
    return decision


def promote(tracking: TrackingConfig, version: str, layout: Layout, client=None) -> dict:
    """Move @champion to ``version`` (it must carry an approved gate decision) and drop @candidate."""
    client = client or runs.client_for(tracking, layout)
    name = tracking.model_name
    model_version = client.get_model_version(name, str(version))
    if model_version.tags.get(TAG_DECISION) != APPROVED:
        raise ModelError(
            f"{name} version {version}: gate decision is "
            f"{model_version.tags.get(TAG_DECISION) or 'missing'}, not {APPROVED}; refusing to promote"
        )
    previous = current_champion(client, name, exclude_version=None)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    if _candidate_version(client, name) == str(version):
        client.delete_registered_model_alias(name, CANDIDATE)
    client.set_model_version_tag(
        name, str(version), "gate.promoted_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    return {
        "promoted": True,
        "model_name": name,
        "version": str(version),
        "previous_champion": previous["version"] if previous else None,
    }


def register_and_decide(tracked: TrackedParams, layout: Layout, client=None) -> dict:
    """The gate less the promotion (a Kubeflow step before its ``dsl.If``): register the trained
    method as @candidate and decide; a missing method is a rejection, never a skip."""
    client = client or runs.client_for(tracked.tracking, layout)
    registration, registration_problem = None, ""
    try:
        registration = register_candidate(tracked, layout, client)
    except ModelError as exc:
        registration_problem = str(exc)
    version = registration["version"] if registration else None
    decision = decide(tracked, layout, version=version, client=client, blocking_problem=registration_problem)
    return {
        "decision": decision["decision"],
        "model_name": decision["model_name"],
        "version": version,
        "reasons": decision["reasons"],
        "registered": registration,
        "promoted": False,
        "previous_champion": None,
        "figures": {c["name"]: c["value"] for c in decision["checks"]},
    }


def run_gate(tracked: TrackedParams, layout: Layout) -> dict:
    """The gate stage: register the trained method as @candidate, decide, promote if approved."""
    client = runs.client_for(tracked.tracking, layout)
    summary = register_and_decide(tracked, layout, client)
    if summary["decision"] == APPROVED:
        promotion = promote(tracked.tracking, summary["version"], layout, client)
        summary.update(promoted=True, previous_champion=promotion["previous_champion"])
    return summary
