"""One shard's files as bytes: the records table as JSON (dtypes kept), the features as safetensors.

The store (latentanon.features.store) decides where shards go and checks them; this module only
turns a FeatureSet into those bytes and back.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, datetime
from pathlib import PurePath

import numpy as np
import pandas as pd

from latentanon.errors import StoreError
from latentanon.features.featureset import FeatureSet

SHARD_FORMAT = "latentanon.featureshard/1"


# ---------------------------------------------------------------------------------------------
# JSON helpers


def to_jsonable(value, where: str = "value"):
    """Plain JSON types from numpy/pandas scalars, arrays, paths and dates (missing -> None)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, where) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), where)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    raise StoreError(f"{where}: cannot store a value of type {type(value).__name__} as JSON")


def json_bytes(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Shard (de)serialisation


def encode_records(records: pd.DataFrame, where: str) -> bytes:
    """The records table as JSON: column order, dtype names and one value list per column."""
    columns = [str(c) for c in records.columns]
    if len(set(columns)) != len(columns):
        raise StoreError(f"{where}: records have duplicate column names {columns}")
    table = {
        "columns": columns,
        "dtypes": {str(c): str(records[c].dtype) for c in records.columns},
        "values": {
            str(c): [to_jsonable(v, f"{where}: column {c!r}") for v in records[c].tolist()] for c in records.columns
        },
        "rows": len(records),
    }
    return json_bytes(table)


def decode_records(data: bytes, where: str) -> pd.DataFrame:
    try:
        table = json.loads(data)
        columns = {}
        for name in table["columns"]:
            dtype, values = table["dtypes"][name], table["values"][name]
            if dtype == "object":
                columns[name] = pd.Series(values, dtype=object)
            else:
                columns[name] = pd.Series(values, dtype=dtype) if values else pd.Series([], dtype=dtype)
        frame = pd.DataFrame(columns, columns=table["columns"])
        if len(frame) != table["rows"] and table["columns"]:
            raise ValueError(f"{len(frame)} rows decoded, {table['rows']} recorded")
        if not table["columns"]:
            frame = pd.DataFrame(index=range(table["rows"]))
        return frame
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{where}: unreadable records table: {exc}") from exc


def encode_arrays(fs: FeatureSet, where: str) -> tuple[bytes, dict]:
    """Safetensors bytes (per kind one concatenated float32 array plus offsets) and a summary."""
    from safetensors.numpy import save

    tensors, summary = {}, {}
    for kind in sorted(fs.arrays):
        items = []
        for row, array in enumerate(fs.arrays[kind]):
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 2:
                raise StoreError(
                    f"{where}: {kind!r} features of record {row} have shape {array.shape}; expected (n, d)"
                )
            items.append(array)
        dims = sorted({a.shape[1] for a in items})
        if len(dims) > 1:
            raise StoreError(f"{where}: {kind!r} features mix widths {dims} in one set")
        dim = dims[0] if dims else 0
        lengths = np.array([a.shape[0] for a in items], dtype=np.int64)
        offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lengths, dtype=np.int64)])
        features = np.concatenate(items, axis=0) if items else np.zeros((0, dim), dtype=np.float32)
        tensors[f"{kind}.features"] = np.ascontiguousarray(features, dtype=np.float32)
        tensors[f"{kind}.offsets"] = offsets
        summary[kind] = {"rows": int(features.shape[0]), "dim": int(dim)}
    # One metadata key only: safetensors writes its metadata map in no fixed order, and a shard
    # must serialise to the same bytes every time so that identical rewrites can be skipped.
    return save(tensors, metadata={"format": SHARD_FORMAT}), summary


def decode_arrays(data: bytes, videos: int, where: str) -> dict[str, list[np.ndarray]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise StoreError(f"{where}: unreadable safetensors file: {exc}") from exc
    kinds = sorted({name.rsplit(".", 1)[0] for name in tensors})
    arrays = {}
    for kind in kinds:
        features, offsets = tensors.get(f"{kind}.features"), tensors.get(f"{kind}.offsets")
        if features is None or offsets is None:
            raise StoreError(f"{where}: kind {kind!r} lacks its features or offsets tensor")
        if (
            offsets.shape != (videos + 1,)
            or offsets[0] != 0
            or offsets[-1] != features.shape[0]
            or np.any(np.diff(offsets) < 0)
        ):
            raise StoreError(f"{where}: offsets of kind {kind!r} do not fit {videos} records")
        # views into one writable array: no per-video copies
        arrays[kind] = [features[offsets[i] : offsets[i + 1]] for i in range(videos)]
    return arrays
