"""The gate's decision record: what was judged, bound to the decision, signed where a key is set.

The record names the registered version, the method's files and digest (fields ``adapter_files`` /
``adapter_sha256``, names a signed record keeps), the method fingerprint,
the encoder identity the metrics were measured on, the metrics file's sha256 and the thresholds.
With ``LATENTANON_GATE_SIGNING_KEY`` set (in Kubernetes, from a Secret) the record carries an
HMAC-SHA256 over its canonical JSON, and ``anonymize`` refuses a record whose signature does
not verify: a ``gate.decision`` tag alone approves nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from latentanon.errors import ModelError

SIGNING_KEY_ENV = "LATENTANON_GATE_SIGNING_KEY"
RECORD_FORMAT = "latentanon.gate_record/1"
TAG_RECORD = "gate.record"
TAG_SIGNATURE = "gate.record_signature"
SIGNED_FIELDS = (
    "format",
    "model_name",
    "version",
    "decision",
    "adapter_sha256",
    "adapter_files",
    "method_fingerprint",
    "encoder",
    "metrics_sha256",
    "thresholds",
    "decided_at",
)


def canonical(record: dict) -> bytes:
    return json.dumps({k: record.get(k) for k in SIGNED_FIELDS}, sort_keys=True, separators=(",", ":")).encode()


def signing_key() -> bytes | None:
    key = os.environ.get(SIGNING_KEY_ENV, "")
    return key.encode() if key else None


def sign(record: dict, key: bytes | None) -> str | None:
    return hmac.new(key, canonical(record), hashlib.sha256).hexdigest() if key else None


def make_record(**fields) -> dict:
    record = {"format": RECORD_FORMAT, **{k: fields.get(k) for k in SIGNED_FIELDS if k != "format"}}
    unknown = set(fields) - set(SIGNED_FIELDS)
    if unknown:
        raise ValueError(f"decision record: unknown fields {sorted(unknown)}")
    return record


def record_tags(record: dict, signature: str | None) -> dict[str, str]:
    tags = {TAG_RECORD: canonical(record).decode()}
    if signature:
        tags[TAG_SIGNATURE] = signature
    return tags


def read_record(tags: dict, where: str) -> tuple[dict, str | None]:
    """The decision record and signature a model version's tags carry (ModelError when absent)."""
    raw = tags.get(TAG_RECORD)
    if not raw:
        raise ModelError(
            f"{where}: no gate decision record ({TAG_RECORD} tag); the gate never judged this "
            "version, whatever its gate.decision tag says"
        )
    try:
        record = json.loads(raw)
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise ValueError(f"format {record.get('format') if isinstance(record, dict) else None!r}")
    except ValueError as exc:
        raise ModelError(f"{where}: unreadable gate decision record: {exc}") from exc
    return record, tags.get(TAG_SIGNATURE)


def verify(record: dict, signature: str | None, key: bytes | None, where: str) -> None:
    """With a key configured, the record must carry a valid signature."""
    if key is None:
        return
    if not signature:
        raise ModelError(
            f"{where}: the gate decision record is unsigned, but {SIGNING_KEY_ENV} is set; "
            "refusing a record the gate did not sign"
        )
    expected = sign(record, key)
    if expected is None or not hmac.compare_digest(expected, signature):
        raise ModelError(
            f"{where}: the gate decision record's signature does not verify (forged or edited "
            "record, or another signing key)"
        )
