"""What a published (anonymized) store may carry: the release schema.

A release is what a user hands to someone else. Its records keep an allow-list of columns only:
an opaque video id (random, never derived from the source id, path or content), the split and
the task columns downstream users need. Private attributes, identity, subject, paths,
checksums and any column the allow-list does not name are dropped (and reported).

The mapping from opaque ids back to the source ids is kept beside the source store
(``<source>.release_ids/<release id>/<set>/shard-NNNNN.json``), never in the release. Evaluation
does not need it: a release mirrors its source row for row, and ``with_source_records``
checks the task columns agree before it puts the source's labels next to the released features.
"""

from __future__ import annotations

import json
import secrets
import time

import pandas as pd

from latentanon.errors import StoreError
from latentanon.features.backends import ObjectNotFound, open_backend
from latentanon.features.featureset import FeatureSet

# Record columns a release may carry, in this order.
RELEASE_COLUMNS = ("video_id", "split", "label", "label_id", "segments", "anomaly", "anomaly_segments", "frames", "fps")
# Task columns compared with the source when a release is aligned with it (video_id differs by design).
ALIGNMENT_COLUMNS = tuple(c for c in RELEASE_COLUMNS if c != "video_id")
# Keys of a release's shard and index meta; nothing else (no directories, URIs, params) is published.
RELEASE_META_KEYS = ("anonymized", "method", "release_id", "encoder")
ID_BYTES = 12
RELEASE_IDS_SUFFIX = ".release_ids"
MAPPING_FORMAT = "latentanon.release_ids/1"

# The publish status file written next to a release (train: unapproved; gate: approved / rejected).
PUBLISH_STATUS_FILE = "PUBLISH_STATUS.json"
UNAPPROVED, APPROVED, REJECTED = "unapproved", "approved", "rejected"


def new_release_id() -> str:
    return secrets.token_hex(ID_BYTES)


def opaque_ids(count: int) -> list[str]:
    """``count`` fresh random video ids (OS entropy: nothing about the source can be read from them)."""
    return [f"v{secrets.token_hex(ID_BYTES)}" for _ in range(count)]


def release_records(records: pd.DataFrame, ids: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The records a release carries (allow-listed columns, ``ids`` as video_id) and the
    names of the columns dropped."""
    if len(ids) != len(records):
        raise StoreError(f"release: {len(ids)} opaque ids for {len(records)} records")
    kept = [c for c in RELEASE_COLUMNS if c in records.columns and c != "video_id"]
    dropped = [str(c) for c in records.columns if c not in RELEASE_COLUMNS]
    out = records[kept].reset_index(drop=True).copy()
    out.insert(0, "video_id", pd.Series(ids, dtype=object))
    return out, dropped


def release_meta(method_name: str, method_id: str, release_id: str, encoder: str | None) -> dict:
    """The meta of a release's shards and index: the method, its fingerprint, the encoder identity."""
    return {
        "anonymized": True,
        "method": {"name": method_name, "id": method_id},
        "release_id": release_id,
        "encoder": {"identity": encoder},
    }


def encoder_identity(meta: dict | None) -> str | None:
    """The encoder identity a store's index (or shard) meta records, or None."""
    encoder = (meta or {}).get("encoder")
    if isinstance(encoder, dict):
        encoder = encoder.get("identity")
    return str(encoder) if encoder else None


def check_release_records(records: pd.DataFrame, where: str) -> None:
    """Refuse to publish records with a column the allow-list does not name."""
    extra = [str(c) for c in records.columns if c not in RELEASE_COLUMNS]
    if extra:
        raise StoreError(
            f"{where}: release records carry columns {extra} outside the allow-list {list(RELEASE_COLUMNS)}"
        )


# ---------------------------------------------------------------------------------------------
# the id mapping, beside the source store


def release_ids_uri(source_uri: str) -> str:
    """Where the opaque-id mapping of releases made from ``source_uri`` lives: next to it."""
    return str(source_uri).rstrip("/") + RELEASE_IDS_SUFFIX


def _mapping_rel(release_id: str, set_name: str, shard: int) -> str:
    return f"{release_id}/{set_name}/shard-{shard:05d}.json"


class ReleaseIds:
    """The opaque-id mappings kept beside one source store (one backend, one client, for every shard)."""

    def __init__(self, source_uri: str) -> None:
        self.backend = open_backend(release_ids_uri(source_uri))

    def write(self, release_id: str, set_name: str, shard: int, entry: dict) -> None:
        body = {"format": MAPPING_FORMAT, "release_id": release_id, "set": set_name, "shard": int(shard), **entry}
        self.backend.write_bytes(
            _mapping_rel(release_id, set_name, shard), (json.dumps(body, sort_keys=True) + "\n").encode()
        )

    def read(self, release_id: str, set_name: str, shard: int) -> dict | None:
        rel = _mapping_rel(release_id, set_name, shard)
        try:
            data = self.backend.read_bytes(rel)
        except ObjectNotFound:
            return None
        try:
            entry = json.loads(data)
            if entry.get("format") != MAPPING_FORMAT:
                raise ValueError(f"format {entry.get('format')!r}")
            return entry
        except (ValueError, AttributeError) as exc:
            raise StoreError(f"{self.backend.location(rel)}: unreadable release id mapping: {exc}") from exc


def read_mapping(source_uri: str, release_id: str, set_name: str, shard: int) -> dict | None:
    """One shard's mapping (opaque id -> source id), or None."""
    return ReleaseIds(source_uri).read(release_id, set_name, shard)


# ---------------------------------------------------------------------------------------------
# evaluation: the released features with the source's labels


def with_source_records(released: FeatureSet, source: FeatureSet, where: str) -> FeatureSet:
    """``released``'s features with ``source``'s records (labels, private attributes for the attacks).

    A release mirrors its source row for row; every task column both hold must agree, row by row,
    or the two are not the same videos in the same order and nothing is measured."""
    if len(released) != len(source):
        raise StoreError(
            f"{where}: set {released.name!r} holds {len(released)} videos, the source "
            f"{len(source)}; re-run the anonymization"
        )
    for column in ALIGNMENT_COLUMNS:
        if column in released.records.columns and column in source.records.columns:
            a = released.records[column].astype(str).tolist()
            b = source.records[column].astype(str).tolist()
            if a != b:
                row = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
                raise StoreError(
                    f"{where}: set {released.name!r} does not hold the source's videos in order "
                    f"(column {column!r} differs at row {row}); re-run the anonymization"
                )
    return FeatureSet(
        name=released.name, records=source.records.copy(), arrays=released.arrays, meta=dict(released.meta)
    )


# ---------------------------------------------------------------------------------------------
# publish status


def write_publish_status(store_uri: str, status: str, reasons: list[str], create: bool = False) -> str:
    """Mark a release with whether the gate approved the method that made it; returns the status
    written, or why none was. ``create``: write it even where the store does not exist yet (a
    release is marked unapproved before its first shard)."""
    backend = open_backend(store_uri)
    if not create and not backend.root_exists():  # e.g. a Kubeflow gate step that does not mount the store
        return f"not written: no store at {store_uri}"
    record = {
        "status": status,
        "share": status == APPROVED,
        "reasons": list(reasons),
        "decision_file": "reports/gate/decision.json",
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    backend.write_bytes(PUBLISH_STATUS_FILE, (json.dumps(record, indent=2) + "\n").encode())
    return status


def read_publish_status(store_uri: str) -> dict | None:
    backend = open_backend(store_uri)
    if not backend.exists(PUBLISH_STATUS_FILE):
        return None
    return json.loads(backend.read_bytes(PUBLISH_STATUS_FILE))
