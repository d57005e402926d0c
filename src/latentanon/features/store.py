"""The sharded feature store: FeatureSets on a local directory or an s3://bucket/prefix.

Layout under the store uri:

    index.json                              every set: shard ids, videos, kinds, dim, checksums; meta
    <set>/shard-00000.safetensors           per kind: "<kind>.features" (rows, d) float32 and
                                            "<kind>.offsets" (videos + 1,) int64
    <set>/shard-00000.records.json          the shard's records table, dtypes included
    <set>/shard-00000.checksums.json        sha256 of both files plus a summary; written LAST

A shard counts as present only once its checksums file exists, so a writer killed mid-shard
leaves nothing that looks complete, and every read verifies the checksums.
"""

from __future__ import annotations

import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePath

import numpy as np
import pandas as pd
from tqdm import tqdm

from latentanon.errors import StoreError
from latentanon.features.backends import ObjectNotFound, open_backend
from latentanon.features.featureset import FeatureSet
from latentanon.features.s3 import S3Backend
from latentanon.features.shards import (
    SHARD_FORMAT,
    decode_arrays,
    decode_records,
    encode_arrays,
    encode_records,
    json_bytes,
    sha256,
    to_jsonable,
)

STORE_FORMAT = "latentanon.featurestore/1"
INDEX_FILE = "index.json"
MAX_SHARDS = 100_000
S3_READ_THREADS = 8
SET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
SHARD_FILE = re.compile(r"shard-(\d{5})\.(safetensors|records\.json|checksums\.json)")


# ---------------------------------------------------------------------------------------------
# The store


def _shard_stem(shard: int) -> str:
    return f"shard-{shard:05d}"


class FeatureStore:
    """Shards of feature sets under a local directory or s3://bucket/prefix, plus an index."""

    def __init__(self, uri: str | os.PathLike) -> None:
        self.backend = open_backend(uri)
        self.uri = self.backend.uri

    # names and paths -------------------------------------------------------------------------

    def _check_name(self, set_name: str) -> None:
        if not isinstance(set_name, str) or not SET_NAME.fullmatch(set_name):
            raise StoreError(f"{self.uri}: invalid feature set name {set_name!r} (letters, digits, '_', '.', '-')")

    def _check_shard(self, shard: int) -> None:
        if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)) or not 0 <= shard < MAX_SHARDS:
            raise StoreError(f"{self.uri}: invalid shard number {shard!r} (0 to {MAX_SHARDS - 1})")

    def _files(self, set_name: str, shard: int) -> dict[str, str]:
        stem = f"{set_name}/{_shard_stem(shard)}"
        return {
            "arrays": f"{stem}.safetensors",
            "records": f"{stem}.records.json",
            "checksums": f"{stem}.checksums.json",
        }

    # shards ------------------------------------------------------------------------------------

    def _read_checksums(self, set_name: str, shard: int) -> dict | None:
        rel = self._files(set_name, shard)["checksums"]
        try:
            data = self.backend.read_bytes(rel)
        except ObjectNotFound:
            return None
        try:
            manifest = json.loads(data)
            manifest["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.backend.location(rel)}: unreadable shard checksums: {exc}") from exc
        self._check_listed_files(manifest["files"], set_name, shard, self.backend.location(rel))
        return manifest

    def _check_listed_files(self, files, set_name: str, shard: int, where: str) -> None:
        """The names a checksums file lists are this shard's own data files, nothing else: no path
        of another shard, set or directory is ever opened because a checksums file says so."""
        expected = {PurePath(self._files(set_name, shard)[role]).name for role in ("arrays", "records")}
        if not isinstance(files, dict):
            raise StoreError(f"{where}: 'files' is not a table of file names")
        for name, info in files.items():
            match = SHARD_FILE.fullmatch(name) if isinstance(name, str) else None
            if not match or int(match.group(1)) != shard or name not in expected:
                raise StoreError(
                    f"{where}: lists file {name!r}, which is not a data file of shard {shard} of "
                    f"set {set_name!r} (expected {sorted(expected)})"
                )
            if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
                raise StoreError(f"{where}: entry for {name!r} has no sha256")

    def shard_info(self, set_name: str, shard: int) -> dict | None:
        """A complete shard's summary (videos, kinds, dim, meta, file checksums) without reading
        its data; None when the shard is missing or incomplete."""
        self._check_name(set_name)
        self._check_shard(shard)
        manifest = self._read_checksums(set_name, shard)
        if manifest is None or not all(self.backend.exists(f"{set_name}/{name}") for name in manifest["files"]):
            return None
        return manifest

    def has_shard(self, set_name: str, shard: int) -> bool:
        """Whether the shard exists and is complete (checksums written and every file present)."""
        return self.shard_info(set_name, shard) is not None

    def write_shard(self, set_name: str, shard: int, fs: FeatureSet) -> dict:
        """Store one chunk of a feature set as shard ``shard`` of ``set_name``; returns its checksums.

        Rewriting a shard with identical content writes nothing. Otherwise the old checksums go
        first, so a write that dies half-way leaves the shard incomplete, never mixed.
        """
        self._check_name(set_name)
        self._check_shard(shard)
        files = self._files(set_name, shard)
        where = self.backend.location(files["arrays"])
        arrays, kinds = encode_arrays(fs, where)
        records = encode_records(fs.records, self.backend.location(files["records"]))
        dims = sorted({k["dim"] for k in kinds.values() if k["rows"]})
        if len(dims) > 1:
            raise StoreError(f"{where}: kinds of set {set_name!r} have different widths {dims}")
        manifest = {
            "format": SHARD_FORMAT,
            "set": set_name,
            "shard": int(shard),
            "videos": len(fs),
            "kinds": kinds,
            "dim": dims[0] if dims else None,
            "meta": to_jsonable(fs.meta, f"{where}: meta"),
            "files": {
                PurePath(files["arrays"]).name: {"sha256": sha256(arrays), "bytes": len(arrays)},
                PurePath(files["records"]).name: {"sha256": sha256(records), "bytes": len(records)},
            },
        }
        if self.shard_info(set_name, shard) == manifest:
            return manifest
        self.backend.delete(files["checksums"])
        self.backend.write_bytes(files["arrays"], arrays)
        self.backend.write_bytes(files["records"], records)
        self.backend.write_bytes(files["checksums"], json_bytes(manifest))
        return manifest

    def read_shard(self, set_name: str, shard: int, expected_files: dict | None = None) -> FeatureSet:
        """One shard as a FeatureSet, every file checked against its sha256.

        ``expected_files`` (from the index) must match the shard's own checksums, which catches a
        shard rewritten after the index was made.
        """
        self._check_name(set_name)
        self._check_shard(shard)
        files = self._files(set_name, shard)
        manifest = self._read_checksums(set_name, shard)
        if manifest is None:
            raise StoreError(
                f"{self.backend.location(files['arrays'])}: shard {shard} of set {set_name!r} is "
                "missing or incomplete (no checksums file)"
            )
        if expected_files is not None and manifest["files"] != expected_files:
            raise StoreError(
                f"{self.backend.location(files['checksums'])}: shard {shard} of set {set_name!r} "
                "changed since the index was written; rewrite the index (finalize the store)"
            )
        blobs = {}
        for name, info in manifest["files"].items():
            rel = f"{set_name}/{name}"
            try:
                data = self.backend.read_bytes(rel)
            except ObjectNotFound as exc:
                raise StoreError(
                    f"{self.backend.location(rel)}: file of shard {shard} of set {set_name!r} is missing"
                ) from exc
            actual = sha256(data)
            if actual != info["sha256"]:
                raise StoreError(
                    f"{self.backend.location(rel)}: checksum mismatch in shard {shard} of set "
                    f"{set_name!r} (sha256 {actual[:12]}..., expected {info['sha256'][:12]}...)"
                )
            blobs[name] = data
        arrays_name, records_name = PurePath(files["arrays"]).name, PurePath(files["records"]).name
        if arrays_name not in blobs or records_name not in blobs:
            raise StoreError(
                f"{self.backend.location(files['checksums'])}: lists {sorted(blobs)}, "
                f"expected {arrays_name} and {records_name}"
            )
        records = decode_records(blobs[records_name], self.backend.location(files["records"]))
        arrays = decode_arrays(blobs[arrays_name], len(records), self.backend.location(files["arrays"]))
        return FeatureSet(name=set_name, records=records, arrays=arrays, meta=dict(manifest.get("meta") or {}))

    def delete_shard(self, set_name: str, shard: int) -> None:
        """Remove a shard (checksums first, so it stops counting before its data goes)."""
        self._check_name(set_name)
        self._check_shard(shard)
        files = self._files(set_name, shard)
        for role in ("checksums", "arrays", "records"):
            self.backend.delete(files[role])

    # scanning ----------------------------------------------------------------------------------

    def _scan(self) -> dict[str, dict[int, set[str]]]:
        """set name -> shard id -> the kinds of shard files present ("safetensors", ...)."""
        found: dict[str, dict[int, set[str]]] = {}
        for rel in self.backend.list_files():
            parts = rel.split("/")
            if len(parts) != 2:
                continue
            match = SHARD_FILE.fullmatch(parts[1])
            if match and SET_NAME.fullmatch(parts[0]):
                found.setdefault(parts[0], {}).setdefault(int(match.group(1)), set()).add(match.group(2))
        return found

    def set_names(self) -> list[str]:
        """Sets with at least one shard file, complete or not (the index lists the finished ones)."""
        return sorted(self._scan())

    def complete_shards(self, set_name: str) -> list[int]:
        """Sorted ids of the complete shards of a set."""
        self._check_name(set_name)
        return sorted(
            shard
            for shard, present in self._scan().get(set_name, {}).items()
            if {"safetensors", "records.json", "checksums.json"} <= present
        )

    # index -------------------------------------------------------------------------------------

    def write_index(self, meta: dict | None = None) -> dict:
        """Scan the shards present and write index.json (with ``meta``); returns the index.

        Refuses a set whose shards are incomplete or not numbered 0..n-1: an index must never
        describe less than what was meant to be written.
        """
        scan = self._scan()
        if not scan:
            raise StoreError(f"{self.uri}: no feature shards to index")
        sets = {}
        for set_name in sorted(scan):
            shards = scan[set_name]
            incomplete = sorted(
                s
                for s, present in shards.items()
                if "checksums.json" not in present or not {"safetensors", "records.json"} <= present
            )
            if incomplete:
                raise StoreError(
                    f"{self.backend.location(set_name)}: shard(s) {incomplete} of set {set_name!r} are "
                    "incomplete (a write was interrupted); rerun the writer to finish them"
                )
            ids = sorted(shards)
            missing = sorted(set(range(ids[-1] + 1)) - set(ids))
            if missing:
                raise StoreError(
                    f"{self.backend.location(set_name)}: shard numbering of set {set_name!r} has gaps: "
                    f"missing shard(s) {missing} (present: {ids})"
                )
            sets[set_name] = self._index_entry(set_name, ids)
        index = {"format": STORE_FORMAT, "sets": sets, "meta": to_jsonable(meta or {}, f"{self.uri}: meta")}
        self.backend.write_bytes(INDEX_FILE, json_bytes(index))
        return index

    def _index_entry(self, set_name: str, ids: list[int]) -> dict:
        manifests: list[dict] = []
        for shard in ids:  # complete shards: each has its checksums
            manifest = self._read_checksums(set_name, shard)
            if manifest is None:
                raise StoreError(f"{self.backend.location(set_name)}: shard {shard} lost its checksums while indexing")
            manifests.append(manifest)
        kinds = {tuple(sorted(m["kinds"])) for m in manifests}
        if len(kinds) > 1:
            raise StoreError(
                f"{self.backend.location(set_name)}: shards of set {set_name!r} hold different kinds {sorted(kinds)}"
            )
        dims = sorted({m["dim"] for m in manifests if m["dim"] is not None})
        if len(dims) > 1:
            raise StoreError(
                f"{self.backend.location(set_name)}: shards of set {set_name!r} have different widths {dims}"
            )
        return {
            "shards": ids,
            "videos": sum(m["videos"] for m in manifests),
            "kinds": sorted(manifests[0]["kinds"]),
            "rows": {k: sum(m["kinds"][k]["rows"] for m in manifests) for k in manifests[0]["kinds"]},
            "dim": dims[0] if dims else None,
            "meta": manifests[0].get("meta") or {},
            "checksums": {_shard_stem(s): m["files"] for s, m in zip(ids, manifests)},
        }

    def read_index(self) -> dict:
        """The store's index.json: {"format", "sets": {name: entry}, "meta"}."""
        try:
            data = self.backend.read_bytes(INDEX_FILE)
        except ObjectNotFound as exc:
            if not self.backend.root_exists():
                raise StoreError(f"{self.uri}: no feature store here") from exc
            raise StoreError(
                f"{self.backend.location(INDEX_FILE)}: missing; the store was never finalized "
                "(write_index after all shards are written)"
            ) from exc
        try:
            index = json.loads(data)
            if index.get("format") != STORE_FORMAT or not isinstance(index.get("sets"), dict):
                raise ValueError(f"format {index.get('format')!r}, expected {STORE_FORMAT!r}")
        except (ValueError, AttributeError) as exc:
            raise StoreError(f"{self.backend.location(INDEX_FILE)}: not a feature store index: {exc}") from exc
        return index


# ---------------------------------------------------------------------------------------------
# Whole feature sets


def write_feature_set(uri: str | os.PathLike, fs: FeatureSet, videos_per_shard: int = 256) -> dict:
    """Write a whole FeatureSet (shards of ``videos_per_shard`` videos), then refresh the index.

    Shards already holding the same content are left alone, and shards left over from an
    earlier, larger version of the set are removed. Returns the index.
    """
    if videos_per_shard < 1:
        raise StoreError(f"{uri}: videos_per_shard must be at least 1, got {videos_per_shard}")
    store = FeatureStore(uri)
    n_shards = max(1, math.ceil(len(fs) / videos_per_shard))
    if n_shards > MAX_SHARDS:
        raise StoreError(f"{store.uri}: {n_shards} shards exceed the limit of {MAX_SHARDS}")
    for shard in tqdm(range(n_shards), desc=f"write {fs.name}", unit="shard", disable=None):
        rows = np.arange(shard * videos_per_shard, min(len(fs), (shard + 1) * videos_per_shard))
        store.write_shard(fs.name, shard, fs.subset(rows))
    stale = [s for s in store._scan().get(fs.name, {}) if s >= n_shards]
    for shard in stale:
        store.delete_shard(fs.name, shard)
    # keep the store-wide meta (encoder identity, params) that an earlier index recorded
    meta = store.read_index().get("meta", {}) if store.backend.exists(INDEX_FILE) else {}
    return store.write_index(meta)


def load_feature_set(uri: str | os.PathLike, name: str) -> FeatureSet:
    """A stored set, all shards in order and checksums verified; meta = index meta + set meta."""
    store = FeatureStore(uri)
    index = store.read_index()
    entry = index["sets"].get(name)
    if entry is None:
        raise StoreError(f"{store.uri}: no feature set {name!r} (has: {sorted(index['sets'])})")

    def read(shard: int) -> FeatureSet:
        return store.read_shard(name, shard, expected_files=entry["checksums"].get(_shard_stem(shard)))

    # Object stores answer slowly but in parallel; local reads gain nothing from threads.
    workers = S3_READ_THREADS if isinstance(store.backend, S3Backend) else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(
            tqdm(
                pool.map(read, entry["shards"]),
                total=len(entry["shards"]),
                desc=f"load {name}",
                unit="shard",
                disable=None,
            )
        )
    records = pd.concat([p.records for p in parts], ignore_index=True) if parts else pd.DataFrame()
    arrays = {kind: [a for p in parts for a in p.arrays.get(kind, [])] for kind in entry["kinds"]}
    if len(records) != entry["videos"]:
        raise StoreError(f"{store.uri}: set {name!r} has {len(records)} videos, index says {entry['videos']}")
    return FeatureSet(name=name, records=records, arrays=arrays, meta={**index.get("meta", {}), **entry["meta"]})


def list_feature_sets(uri: str | os.PathLike) -> list[str]:
    """Names of the sets the store's index lists (the ones load_feature_set can read)."""
    return sorted(FeatureStore(uri).read_index()["sets"])
