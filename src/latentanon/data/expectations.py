"""The great-expectations checks of one set, and of the files' readability.

Rules GX has no native expectation for (interval lists, identities across sets) become derived
``v_*`` columns first, which ordinary expectations then test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from latentanon.data.config import DataConfig
from latentanon.data.layouts import ATTRIBUTE_COLUMNS, IMAGE_SUFFIXES, UNKNOWN
from latentanon.data.manifests import INTEGER_COLUMNS, REQUIRED_COLUMNS, STRING_COLUMNS
from latentanon.data.vocabulary import Vocabulary

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

SPLITS = ("train", "val", "test")
# Sets whose purpose needs the labels: privacy attackers train on attributes, the bias audit on gender.
REQUIRED_ATTRIBUTES = {"privacy_videos": ATTRIBUTE_COLUMNS, "privacy_images": ATTRIBUTE_COLUMNS, "bias": ("gender",)}
NORMAL_CLASS = "Normal"  # the UCF-Crime class of videos without anomaly
# Annotation ends may sit exactly on the last frame's end; allow float rounding only.
INTERVAL_TOLERANCE_SEC = 1e-6


def _is_image(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


# ----------------------------------------------------------------------------------------------
# Derived columns that turn row-level rules into plain expectations


def _interval_stats(cell, classes: frozenset[str]) -> tuple[float, float, float, bool, bool, int]:
    """(min start, max end, min length, well formed, labels known, count) of one JSON interval list."""
    try:
        intervals = json.loads(cell) if isinstance(cell, str) else cell
    except json.JSONDecodeError:
        return np.nan, np.nan, np.nan, False, True, 0
    if intervals is None or (isinstance(intervals, float) and np.isnan(intervals)):
        intervals = []
    if not isinstance(intervals, (list, tuple, np.ndarray)):
        return np.nan, np.nan, np.nan, False, True, 0
    starts, ends, known = [], [], True
    for item in intervals:
        if not isinstance(item, (list, tuple)) or len(item) < 2:
            return np.nan, np.nan, np.nan, False, True, 0
        try:
            start, end = float(item[0]), float(item[1])
        except (TypeError, ValueError):
            return np.nan, np.nan, np.nan, False, True, 0
        if not (np.isfinite(start) and np.isfinite(end)):
            return np.nan, np.nan, np.nan, False, True, 0
        starts.append(start)
        ends.append(end)
        if len(item) > 2 and classes and str(item[2]) not in classes:
            known = False
    if not starts:
        return np.nan, np.nan, np.nan, True, True, 0
    lengths = np.asarray(ends) - np.asarray(starts)
    return min(starts), max(ends), float(lengths.min()), True, known, len(starts)


def derive_check_columns(df: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """The manifest plus ``v_*`` columns; string columns as Python objects (see below)."""
    out = df.reset_index(drop=True).copy()
    # GX 1.x type checks do not know pandas' "str" dtype; as object columns each value's type
    # is checked instead, which is what we want anyway.
    for column in STRING_COLUMNS & set(out.columns):
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].astype(object)
    paths = out["path"].astype(str) if "path" in out.columns else pd.Series([""] * len(out))
    out["v_kind"] = ["image" if _is_image(p) else "video" for p in paths]
    if "segments" in out.columns and {"frames", "fps"} <= set(out.columns):
        frames = pd.to_numeric(out["frames"], errors="coerce")
        fps = pd.to_numeric(out["fps"], errors="coerce").replace(0, np.nan)
        out["v_duration_sec"] = frames / fps + INTERVAL_TOLERANCE_SEC
        stats = [_interval_stats(cell, frozenset(classes)) for cell in out["segments"]]
        out["v_segment_start_min"] = [s[0] for s in stats]
        out["v_segment_end_max"] = [s[1] for s in stats]
        out["v_segment_length_min"] = [s[2] for s in stats]
        out["v_segments_well_formed"] = [s[3] for s in stats]
        out["v_segment_labels_known"] = [s[4] for s in stats]
        out["v_segment_count"] = [s[5] for s in stats]
    return out


# ----------------------------------------------------------------------------------------------
# The expectation suite of one set


def _identities(df: pd.DataFrame, split: str) -> list:
    if "identity" not in df.columns or "split" not in df.columns:
        return []
    values = df.loc[df["split"] == split, "identity"]
    known = {v for v in values.tolist() if v is not None and v == v and str(v) not in ("", str(UNKNOWN))}
    return sorted(known, key=str)


def build_checks(
    set_name: str,
    df: pd.DataFrame,
    vocab: Vocabulary,
    data_cfg: DataConfig,
    other_train_identities: list,
    other_checksums: list,
    require_identity: bool = True,
) -> list[tuple[str, Expectation]]:
    """(check name, expectation) pairs for one set; ``df`` already has the ``v_*`` columns."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    E = gx.expectations
    columns = set(df.columns)
    checks: list[tuple[str, Expectation]] = [
        (
            "schema: required columns",
            E.ExpectTableColumnsToMatchSet(column_set=list(REQUIRED_COLUMNS), exact_match=False),
        ),
    ]
    # Integer columns cannot hold nulls, so their type check covers them; GX's cost is per expectation.
    for column in REQUIRED_COLUMNS:
        if column in columns and column not in INTEGER_COLUMNS:
            checks.append((f"schema: {column} not null", E.ExpectColumnValuesToNotBeNull(column=column)))
    for column in sorted(STRING_COLUMNS & columns):
        checks.append((f"schema: {column} is text", E.ExpectColumnValuesToBeOfType(column=column, type_="str")))
    for column in sorted(INTEGER_COLUMNS & columns):
        checks.append(
            (
                f"schema: {column} is integer",
                E.ExpectColumnValuesToBeInTypeList(column=column, type_list=["int64", "int32", "int16", "int8"]),
            )
        )
    if "fps" in columns:
        checks.append(
            (
                "schema: fps is numeric",
                E.ExpectColumnValuesToBeInTypeList(column="fps", type_list=["float64", "float32", "int64", "int32"]),
            )
        )

    # identity and uniqueness
    for column in ("video_id", "path", "checksum"):
        if column in columns:
            checks.append((f"unique {column}", E.ExpectColumnValuesToBeUnique(column=column)))
    if "checksum" in columns:
        checks.append(
            ("checksum is sha256 hex", E.ExpectColumnValuesToMatchRegex(column="checksum", regex=r"^[0-9a-f]{64}$"))
        )
        checks.append(
            (
                "checksum not shared with another set",
                E.ExpectColumnValuesToNotBeInSet(column="checksum", value_set=other_checksums),
            )
        )
    if "identity" in columns:
        if require_identity:
            # real datasets carry identities only for UCF101 (groups) and NTU (subjects)
            name = (
                "identity known"
                if vocab.from_classes_file
                else "identity known (real data without identity sidecars: validate.require_identity=false)"
            )
            checks.append((name, E.ExpectColumnValuesToBeBetween(column="identity", min_value=0)))
        else:
            checks.append(
                ("identity known or -1", E.ExpectColumnValuesToBeBetween(column="identity", min_value=UNKNOWN))
            )

    # label sets
    if "set" in columns:
        checks.append(("set column names this set", E.ExpectColumnValuesToBeInSet(column="set", value_set=[set_name])))
    if "split" in columns:
        checks.append(
            ("split in train/val/test", E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)))
        )
    classes = vocab.classes(set_name)
    if {"label", "label_id"} <= columns:
        pairs = [(name, index) for index, name in enumerate(classes)] + [("", UNKNOWN)]
        checks.append(
            (
                "label in classes.json with its index",
                E.ExpectColumnPairValuesToBeInSet(column_A="label", column_B="label_id", value_pairs_set=pairs),
            )
        )
    for attribute in ATTRIBUTE_COLUMNS:
        if attribute in columns:
            size = vocab.attribute_sizes.get(attribute)
            labelled = attribute in REQUIRED_ATTRIBUTES.get(set_name, ()) and vocab.from_classes_file
            checks.append(
                (
                    f"{attribute} id {'labelled and ' if labelled else ''}in range",
                    E.ExpectColumnValuesToBeBetween(
                        column=attribute,
                        min_value=0 if labelled else UNKNOWN,
                        max_value=None if size is None else size - 1,
                    ),
                )
            )
    if "anomaly" in columns:
        checks.append(("anomaly is 0/1", E.ExpectColumnValuesToBeInSet(column="anomaly", value_set=[0, 1])))
        if NORMAL_CLASS in classes and "label" in columns:
            pairs = [(name, int(name != NORMAL_CLASS)) for name in classes]
            checks.append(
                (
                    "anomaly flag matches the class",
                    E.ExpectColumnPairValuesToBeInSet(column_A="label", column_B="anomaly", value_pairs_set=pairs),
                )
            )
    if "subject" in columns:
        checks.append(("subject known", E.ExpectColumnValuesToBeBetween(column="subject", min_value=0)))

    # ranges
    if "frames" in columns:
        checks.append(("frames > 0", E.ExpectColumnValuesToBeBetween(column="frames", min_value=1)))
        checks.append(
            (
                "images have one frame",
                E.ExpectColumnValuesToBeBetween(
                    column="frames", min_value=1, max_value=1, row_condition=Column("v_kind") == "image"
                ),
            )
        )
    if not vocab.from_classes_file:
        # real datasets keep their own frame size and rate; extraction resizes and resamples
        if "fps" in columns:
            checks.append(
                (
                    "fps > 0",
                    E.ExpectColumnValuesToBeBetween(
                        column="fps", min_value=0, strict_min=True, row_condition=Column("v_kind") == "video"
                    ),
                )
            )
        for column in ("width", "height"):
            if column in columns:
                checks.append((f"{column} > 0", E.ExpectColumnValuesToBeBetween(column=column, min_value=1)))
    else:
        if "fps" in columns:
            checks.append(
                (
                    f"fps = {data_cfg.fps}",
                    E.ExpectColumnValuesToBeBetween(
                        column="fps",
                        min_value=data_cfg.fps - 1e-3,
                        max_value=data_cfg.fps + 1e-3,
                        row_condition=Column("v_kind") == "video",
                    ),
                )
            )
        if "width" in columns:
            checks.append(
                (f"width = {data_cfg.width}", E.ExpectColumnValuesToBeInSet(column="width", value_set=[data_cfg.width]))
            )
        if "height" in columns:
            checks.append(
                (
                    f"height = {data_cfg.height}",
                    E.ExpectColumnValuesToBeInSet(column="height", value_set=[data_cfg.height]),
                )
            )

    # splits disjoint by identity, within the set and against other sets' training data
    if {"identity", "split"} <= columns:
        train, val = _identities(df, "train"), _identities(df, "val")
        checks.append(
            (
                "val identities not in train",
                E.ExpectColumnValuesToNotBeInSet(
                    column="identity", value_set=train, row_condition=Column("split") == "val"
                ),
            )
        )
        checks.append(
            (
                "test identities not in train or val",
                E.ExpectColumnValuesToNotBeInSet(
                    column="identity",
                    value_set=sorted(set(train) | set(val), key=str),
                    row_condition=Column("split") == "test",
                ),
            )
        )
        checks.append(
            (
                "test identities not in train of other sets",
                E.ExpectColumnValuesToNotBeInSet(
                    column="identity", value_set=other_train_identities, row_condition=Column("split") == "test"
                ),
            )
        )

    # annotation intervals inside the video
    if "v_segment_end_max" in columns:
        checks += [
            ("segments well formed", E.ExpectColumnValuesToBeInSet(column="v_segments_well_formed", value_set=[True])),
            (
                "segment labels in classes.json",
                E.ExpectColumnValuesToBeInSet(column="v_segment_labels_known", value_set=[True]),
            ),
            ("segments start >= 0", E.ExpectColumnValuesToBeBetween(column="v_segment_start_min", min_value=0)),
            (
                "segments start < end",
                E.ExpectColumnValuesToBeBetween(column="v_segment_length_min", min_value=0, strict_min=True),
            ),
            (
                "segments end <= duration",
                E.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="v_duration_sec",
                    column_B="v_segment_end_max",
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                ),
            ),
        ]
        if "anomaly" in columns:
            checks.append(
                (
                    "normal videos have no anomaly interval",
                    E.ExpectColumnValuesToBeInSet(
                        column="v_segment_count", value_set=[0], row_condition=Column("anomaly") == 0
                    ),
                )
            )
            # frame-level AUC needs where each test anomaly happens (UCF-Crime's temporal annotation)
            checks.append(
                (
                    "test anomalies have an interval",
                    E.ExpectColumnValuesToBeBetween(
                        column="v_segment_count",
                        min_value=1,
                        row_condition=(Column("anomaly") == 1) & (Column("split") == "test"),
                    ),
                )
            )
    return checks


def readability_checks(manifests: dict[str, pd.DataFrame], bad: set[tuple[str, str]], max_fraction: float):
    """One frame over every file of every set and, per set, the share of readable files it needs."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    frame = pd.DataFrame(
        {
            "v_set": [name for name, df in manifests.items() for _ in range(len(df))],
            "video_id": [str(v) for df in manifests.values() for v in df["video_id"]],
        },
        dtype=object,
    )
    frame["v_readable"] = [(s, v) not in bad for s, v in zip(frame["v_set"], frame["video_id"])]
    checks = [
        (
            name,
            f"readable files (quarantine <= {max_fraction:.1%})",
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="v_readable", value_set=[True], mostly=1.0 - max_fraction, row_condition=Column("v_set") == name
            ),
        )
        for name in manifests
    ]
    return frame, checks
