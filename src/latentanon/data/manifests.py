"""Manifest tables on disk: one CSV per benchmark set, read back with the contract's types.

A manifest is what every stage after ``validate`` reads. CSV keeps it readable and diffable;
the price is that types must be restored on read, which this module does in one place.
Column contract: docs/internals.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from latentanon._files import atomic_path
from latentanon.data.layouts import ATTRIBUTE_COLUMNS
from latentanon.errors import DataError

# Columns every manifest has, in the order they are written.
REQUIRED_COLUMNS = (
    "video_id",
    "path",
    "set",
    "split",
    "label",
    "label_id",
    "identity",
    "frames",
    "fps",
    "width",
    "height",
    "checksum",
)
STRING_COLUMNS = frozenset({"video_id", "path", "set", "split", "label", "checksum"})
# Ids are integers; -1 marks a value the dataset does not provide (layouts.UNKNOWN).
INTEGER_COLUMNS = frozenset(
    {"label_id", "identity", "frames", "width", "height", *ATTRIBUTE_COLUMNS, "anomaly", "subject"}
)
FLOAT_COLUMNS = frozenset({"fps"})
# Interval lists stored as JSON text in the CSV.
JSON_COLUMNS = frozenset({"segments", "anomaly_segments"})


def manifest_path(manifests_dir: str | Path, set_name: str) -> Path:
    return Path(manifests_dir) / f"{set_name}.csv"


def _encode_json_cell(value, column: str, row: int, set_name: str) -> str:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return json.dumps([list(v) if isinstance(v, (list, tuple)) else v for v in value])
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"manifest {set_name!r}: row {row} {column!r} is not JSON ({exc})") from exc
        return value
    raise DataError(f"manifest {set_name!r}: row {row} {column!r} must be a list, got {type(value).__name__}")


def write_manifest(df: pd.DataFrame, manifests_dir: str | Path, set_name: str) -> Path:
    """Write ``df`` as manifests_dir/<set_name>.csv atomically; interval lists become JSON text."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"manifest {set_name!r}: missing required columns {missing}")
    out = df.copy()
    for column in JSON_COLUMNS & set(out.columns):
        out[column] = [_encode_json_cell(v, column, i, set_name) for i, v in enumerate(out[column])]
    ordered = list(REQUIRED_COLUMNS) + [c for c in out.columns if c not in REQUIRED_COLUMNS]
    path = manifest_path(manifests_dir, set_name)
    with atomic_path(path) as tmp:
        out[ordered].to_csv(tmp, index=False)
    return path


def _bad_rows(mask: pd.Series, df: pd.DataFrame, limit: int = 5) -> str:
    rows = df.index[mask.to_numpy()]
    ids = df.loc[rows, "video_id"].tolist() if "video_id" in df.columns else list(rows)
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(str(i) for i in ids[:limit]) + more


def _to_number(raw: pd.Series, column: str, kind: str, df: pd.DataFrame, path: Path) -> pd.Series:
    numbers = pd.to_numeric(raw.str.strip(), errors="coerce")
    bad = numbers.isna()
    if kind == "int":
        bad |= numbers.notna() & (numbers != np.floor(numbers.fillna(0)))
    if bad.any():
        raise DataError(f"{path}: column {column!r} needs {kind} values; bad rows: {_bad_rows(bad, df)}")
    return numbers.astype("int64" if kind == "int" else "float64")


def _parse_json_column(raw: pd.Series, column: str, df: pd.DataFrame, path: Path) -> list:
    parsed = []
    for i, text in enumerate(raw):
        try:
            value = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}: column {column!r} of row {i} ({df['video_id'].iat[i]}) is not valid JSON: {exc}"
            ) from exc
        if not isinstance(value, list):
            raise DataError(f"{path}: column {column!r} of row {i} ({df['video_id'].iat[i]}) must be a JSON list")
        parsed.append(value)
    return parsed


def _infer(raw: pd.Series) -> pd.Series:
    """Columns outside the contract: integers or floats when every value is one, else text."""
    numbers = pd.to_numeric(raw, errors="coerce")
    if len(raw) == 0 or numbers.isna().any():
        return raw
    if (numbers == np.floor(numbers)).all() and not raw.str.contains(r"[.eE]", regex=True).any():
        return numbers.astype("int64")
    return numbers.astype("float64")


def read_manifest(manifests_dir: str | Path, set_name: str) -> pd.DataFrame:
    """Read manifests_dir/<set_name>.csv with dtypes restored and interval lists parsed.

    Raises DataError naming the file when it is missing, unreadable, lacks a required column,
    or holds a value of the wrong type.
    """
    path = manifest_path(manifests_dir, set_name)
    if not path.exists():
        raise DataError(f"{path}: manifest of set {set_name!r} not found (run the validate stage first)")
    try:
        # Everything as text first: "" labels must stay "" and ids like "007" must keep their zeros.
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot parse manifest CSV ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: manifest lacks required columns {missing}")
    df = pd.DataFrame(index=raw.index)
    for column in raw.columns:
        values = raw[column]
        if column in STRING_COLUMNS:
            df[column] = values.astype(str)
        elif column in INTEGER_COLUMNS:
            df[column] = _to_number(values, column, "int", raw, path)
        elif column in FLOAT_COLUMNS:
            df[column] = _to_number(values, column, "float", raw, path)
        elif column in JSON_COLUMNS:
            df[column] = pd.Series(_parse_json_column(values, column, raw, path), index=raw.index, dtype=object)
        else:
            df[column] = _infer(values)
    return df


def list_manifests(manifests_dir: str | Path) -> list[str]:
    """Set names that have a manifest in ``manifests_dir``, sorted."""
    directory = Path(manifests_dir)
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.csv") if not p.name.startswith("."))
