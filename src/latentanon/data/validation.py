"""The ``validate`` stage: great-expectations checks on every benchmark manifest.

Flow: DATA's loaders build one manifest per set; every file is opened (a full decode when
``check_decode``) and unreadable ones are quarantined with their reason; the readable rows of
each set then go through one great-expectations suite (schema, label sets, ranges, splits,
identity disjointness, duplicate checksums, annotation intervals). Results are written as JSON
and a readable summary; the stage fails with a message naming set, check and rows when any
expectation fails or too many files were quarantined. Manifests are written only on success,
so later stages never read data that failed validation.

great-expectations runs in an ephemeral context with analytics and its progress bars off; the
only thing it writes is its Data Docs (the HTML report of every suite and validation result) under
``<report_dir>/data_docs/``, linked from the summary. Checks GX has no native expectation for (interval lists, identities
across sets) are expressed as derived ``v_*`` columns that ordinary expectations then test, so
every failure is reported by GX with its offending rows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from latentanon._files import read_json, write_text_atomic
from latentanon.data.config import DataConfig, ValidateConfig
from latentanon.data.layouts import ATTRIBUTE_COLUMNS, IMAGE_SUFFIXES, UNKNOWN
from latentanon.data.manifests import INTEGER_COLUMNS, REQUIRED_COLUMNS, STRING_COLUMNS, write_manifest
from latentanon.errors import DataError, LatentanonError, ValidationFailed

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

SPLITS = ("train", "val", "test")
# Sets whose purpose needs the labels: privacy attackers train on attributes, the bias audit on gender.
REQUIRED_ATTRIBUTES = {"privacy_videos": ATTRIBUTE_COLUMNS, "privacy_images": ATTRIBUTE_COLUMNS, "bias": ("gender",)}
NORMAL_CLASS = "Normal"  # the UCF-Crime class of videos without anomaly
QUARANTINE_COLUMNS = ("set", "video_id", "path", "reason")
# Offending rows listed per failed check in messages and reports (the full count is always given),
# and failed checks listed in the stage's error message (all are in the reports).
LISTED_ROWS = 10
LISTED_CHECKS = 20
DATA_DOCS_DIR = "data_docs"  # great-expectations' HTML report, under the validate report folder
DATA_DOCS_SITE = "validate"
# Annotation ends may sit exactly on the last frame's end; allow float rounding only.
INTERVAL_TOLERANCE_SEC = 1e-6


@dataclass(frozen=True)
class Vocabulary:
    """What labels may be, from classes.json: each set's class list and each attribute's size."""

    classes_by_set: dict[str, tuple[str, ...]]
    default_classes: tuple[str, ...] = ()
    attribute_sizes: dict[str, int] = field(default_factory=dict)
    # False for real data (no classes.json): classes come from the datasets' own files, frame
    # size and fps vary by dataset (checked positive, not equal to data.*), and attributes the
    # dataset does not label may stay unknown.
    from_classes_file: bool = True

    def classes(self, set_name: str) -> tuple[str, ...]:
        return self.classes_by_set.get(set_name, self.default_classes)


@dataclass
class CheckOutcome:
    """One expectation's result on one set, in the form reports and messages need."""

    set_name: str
    check: str
    expectation: str
    success: bool
    observed: object = None
    unexpected_count: int = 0
    unexpected_rows: list[str] = field(default_factory=list)
    error: str = ""

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "expectation": self.expectation,
            "success": self.success,
            "observed": self.observed,
            "unexpected_count": self.unexpected_count,
            "unexpected_rows": self.unexpected_rows,
            **({"error": self.error} if self.error else {}),
        }

    def describe(self) -> str:
        if self.error:
            detail = f"could not be evaluated: {self.error}"
        elif self.unexpected_rows:
            more = self.unexpected_count - len(self.unexpected_rows)
            rows = ", ".join(self.unexpected_rows) + (f" (+{more} more)" if more > 0 else "")
            detail = f"{self.unexpected_count} offending rows: {rows}"
        else:
            detail = f"observed {json.dumps(self.observed, default=str)}"
        return f"set '{self.set_name}', check '{self.check}' ({self.expectation}): {detail}"


# ----------------------------------------------------------------------------------------------
# Vocabulary


def _class_list(value, path: Path, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        raise DataError(f"{path}: {where} must be a list of class names")
    if len(set(value)) != len(value):
        raise DataError(f"{path}: {where} has duplicate class names")
    return tuple(value)


def vocabulary_from_manifests(manifests: dict[str, pd.DataFrame]) -> Vocabulary:
    """Real data without classes.json: each set's classes as its loader read them from the
    dataset's own files (label_id order), plus the labels of its annotation segments."""
    by_set = {}
    for name, df in manifests.items():
        names: dict[int, str] = {}
        if {"label", "label_id"} <= set(df.columns):
            for label, label_id in zip(df["label"].tolist(), df["label_id"].tolist()):
                if isinstance(label, str) and label and pd.notna(label_id) and int(label_id) >= 0:
                    names.setdefault(int(label_id), label)
        # ids no listed video uses keep their place; the placeholder matches no real label
        classes = [names.get(i, f"<unused class {i}>") for i in range(max(names, default=-1) + 1)]
        if "segments" in df.columns:
            for cell in df["segments"].tolist():
                try:
                    spans = json.loads(cell) if isinstance(cell, str) and cell else []
                except json.JSONDecodeError:
                    continue  # the segment checks report it
                for span in spans if isinstance(spans, list) else []:
                    if isinstance(span, list) and len(span) > 2 and str(span[2]) not in classes:
                        classes.append(str(span[2]))
        by_set[name] = tuple(classes)
    return Vocabulary(classes_by_set=by_set, from_classes_file=False)


def load_vocabulary(root: Path) -> Vocabulary:
    """root/classes.json: {"sets": {set: [class, ...]}, "actions": [...], "attributes": {name:
    [value names]}} (a plain list of classes is accepted too, for every set)."""
    path = Path(root) / "classes.json"
    if not path.exists():
        raise DataError(f"{path}: classes.json not found in the data root (run generate first)")
    payload = read_json(path, DataError)
    if isinstance(payload, list):
        return Vocabulary(classes_by_set={}, default_classes=_class_list(payload, path, "the class list"))
    if not isinstance(payload, dict):
        raise DataError(f"{path}: expected an object or a list of class names")
    sets = payload.get("sets", {})
    if not isinstance(sets, dict):
        raise DataError(f"{path}: 'sets' must map set names to class lists")
    by_set = {name: _class_list(value, path, f"sets.{name}") for name, value in sets.items()}
    default = _class_list(payload["actions"], path, "actions") if "actions" in payload else ()
    sizes = {}
    attributes = payload.get("attributes", {})
    if not isinstance(attributes, dict):
        raise DataError(f"{path}: 'attributes' must map attribute names to value names")
    for name, values in attributes.items():
        count = len(values) if isinstance(values, list) else values
        if not isinstance(count, int) or count < 1:
            raise DataError(f"{path}: attribute {name!r} needs a list of value names or a positive count")
        sizes[name] = count
    return Vocabulary(classes_by_set=by_set, default_classes=default, attribute_sizes=sizes)


# ----------------------------------------------------------------------------------------------
# Files: existence and decode (the quarantine)


def _is_image(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def file_problem(row: pd.Series, root: Path, check_decode: bool) -> str:
    """Why this row's file cannot be used ("" when it can)."""
    loader_error = str(row.get("error", "") or "")
    if loader_error and loader_error.lower() != "nan":
        return f"loader: {loader_error}"
    path = root / str(row["path"])
    if not path.is_file():
        return "file not found"
    if path.stat().st_size == 0:
        return "empty file"
    if not check_decode:
        return ""
    from latentanon.data import video_io

    try:
        if _is_image(str(row["path"])):
            pixels = video_io.read_image(path)
            frames, height, width = 1, pixels.shape[0], pixels.shape[1]
        else:
            scanned = video_io.scan_video(path)
            frames, height, width = scanned["frames"], scanned["height"], scanned["width"]
    except DataError as exc:
        return f"unreadable: {exc}"
    # Disagreement with the manifest means a truncated or replaced file; type problems in these
    # columns are left to the schema expectations.
    problems = []
    for column, decoded in (("frames", frames), ("height", height), ("width", width)):
        claimed = pd.to_numeric(pd.Series([row.get(column)]), errors="coerce").iat[0]
        if pd.notna(claimed) and int(claimed) != decoded:
            problems.append(f"decoded {column} {decoded}, manifest says {int(claimed)}")
    return "; ".join(problems)


def check_files(manifests: dict[str, pd.DataFrame], root: Path, check_decode: bool) -> pd.DataFrame:
    """One row per unusable file: set, video_id, path, reason."""
    total = sum(len(df) for df in manifests.values())
    problems = []
    with tqdm(
        total=total,
        desc="validate: decode check" if check_decode else "validate: file check",
        unit="file",
        disable=None,
    ) as bar:
        for set_name, df in manifests.items():
            for _, row in df.iterrows():
                reason = file_problem(row, root, check_decode)
                if reason:
                    problems.append((set_name, str(row["video_id"]), str(row["path"]), reason))
                bar.update(1)
    return pd.DataFrame(problems, columns=list(QUARANTINE_COLUMNS))


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


# ----------------------------------------------------------------------------------------------
# Running great-expectations


def _ephemeral_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def build_data_docs(context, directory: Path) -> Path:
    """Write great-expectations' Data Docs of every validation run in ``context`` into
    ``directory`` (replacing an older report there); returns its index.html."""
    import shutil

    # absolute: great-expectations refuses a relative site folder in an ephemeral context, and the
    # main job's workdir is "."
    given = Path(directory)
    directory = given.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    context.add_data_docs_site(
        site_name=DATA_DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(directory)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    context.build_data_docs(site_names=[DATA_DOCS_SITE])
    if not (directory / "index.html").is_file():
        raise DataError(f"{given}: great-expectations wrote no Data Docs index")
    return given / "index.html"


def _rows_of(result: dict) -> list[str]:
    rows = []
    for item in result.get("unexpected_index_list") or []:
        rows.append(str(item.get("video_id", item)) if isinstance(item, dict) else str(item))
    return rows[:LISTED_ROWS]


def _outcome(set_name: str, check: str, result) -> CheckOutcome:
    payload = result.to_json_dict()
    body = payload.get("result") or {}
    info = payload.get("exception_info") or {}
    error = (info.get("exception_message") or "unknown error") if info.get("raised_exception") else ""
    observed = body.get("observed_value")
    if observed is None and "element_count" in body:
        observed = {k: body[k] for k in ("element_count", "unexpected_count", "missing_count") if k in body}
    if isinstance(body.get("details"), dict) and "mismatched" in body["details"]:
        observed = {"columns": body.get("observed_value"), "mismatched": body["details"]["mismatched"]}
    return CheckOutcome(
        set_name=set_name,
        check=check,
        expectation=payload["expectation_config"]["type"],
        success=bool(payload["success"]),
        observed=observed,
        unexpected_count=int(body.get("unexpected_count") or 0),
        unexpected_rows=_rows_of(body),
        error=str(error),
    )


def run_suite(
    context, suite_name: str, df: pd.DataFrame, checks: list[tuple[str, str, Expectation]]
) -> list[CheckOutcome]:
    """Validate ``df`` (the whole dataframe as one batch) against (set, check name, expectation)
    triples; one outcome per triple, in order."""
    import great_expectations as gx

    asset = context.data_sources.add_pandas(f"{suite_name}-source").add_dataframe_asset(f"{suite_name}-manifest")
    batch = asset.add_batch_definition_whole_dataframe(f"{suite_name}-all-rows")
    for set_name, check, expectation in checks:
        expectation.meta = {"set": set_name, "check": check}
    # One add with every expectation: adding them one by one re-serialises the suite each time.
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=[e for _, _, e in checks]))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    index_columns = ["video_id"] if "video_id" in df.columns else []
    result = definition.run(
        batch_parameters={"dataframe": df},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns},
    )
    by_key = {(r.expectation_config.meta["set"], r.expectation_config.meta["check"]): r for r in result.results}
    return [_outcome(set_name, check, by_key[(set_name, check)]) for set_name, check, _ in checks]


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


# ----------------------------------------------------------------------------------------------
# Reports


def _decode_words(report: dict) -> str:
    if not report["check_decode"]:
        return "existence only"
    return "full decode by the loaders" if report.get("decoded_by") == "loaders" else "full decode"


def _summary_markdown(report: dict) -> str:
    lines = [
        "# Validation summary",
        "",
        f"Result: **{'PASSED' if report['success'] else 'FAILED'}**. "
        f"{report['files']} files checked ({_decode_words(report)}), "
        f"{report['quarantined']} quarantined (limit {report['max_quarantined_fraction']:.1%} per set).",
        "",
        f"great-expectations Data Docs (every suite and result, as HTML): [{report['data_docs']}]({report['data_docs']})",
        "",
        "| set | rows | kept | quarantined | checks | failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in report["sets"].items():
        failed = sum(not e["success"] for e in entry["expectations"])
        lines.append(
            f"| {name} | {entry['rows']} | {entry['kept']} | {entry['quarantined']} | {len(entry['expectations'])} | {failed} |"
        )
    for name, entry in report["sets"].items():
        lines += ["", f"## {name}", "", "| check | expectation | result | detail |", "|---|---|---|---|"]
        for e in entry["expectations"]:
            if e.get("error"):
                detail = f"error: {e['error']}"
            elif e["unexpected_count"]:
                detail = f"{e['unexpected_count']} rows: {', '.join(e['unexpected_rows'])}"
            else:
                detail = json.dumps(e["observed"], default=str) if e["observed"] is not None else ""
            detail = detail.replace("|", "\\|")
            if len(detail) > 160:
                detail = detail[:157] + "..."
            lines.append(f"| {e['check']} | {e['expectation']} | {'pass' if e['success'] else '**FAIL**'} | {detail} |")
    if report["quarantine"]:
        lines += ["", "## Quarantined files", "", "| set | video_id | reason |", "|---|---|---|"]
        for q in report["quarantine"]:
            lines.append(f"| {q['set']} | {q['video_id']} | {str(q['reason']).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# The stage


def _cross_set_values(kept: dict[str, pd.DataFrame], set_name: str) -> tuple[list, list]:
    """Training identities and all checksums of every set other than ``set_name``."""
    identities: set = set()
    checksums: set[str] = set()
    for other, df in kept.items():
        if other == set_name:
            continue
        identities.update(_identities(df, "train"))
        if "checksum" in df.columns:
            checksums.update(str(c) for c in df["checksum"].tolist())
    return sorted(identities, key=str), sorted(checksums)


def validate_benchmark(
    data_cfg: DataConfig,
    cfg: ValidateConfig,
    root: str | Path,
    manifests_dir: str | Path,
    report_dir: str | Path,
) -> dict:
    """Build the manifests with DATA's loaders, then check and write them (validate_manifests)."""
    from latentanon.data.loaders import build_manifests

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root not found (run generate first, or set data.root)")
    started = time.perf_counter()
    manifests = build_manifests(data_cfg, root)
    probe_seconds = time.perf_counter() - started
    if not manifests:
        raise DataError(f"{root}: no benchmark sets found")
    # the loaders just decoded every file in full to fill frames and size (a failure is in the
    # row's error column), so the decode check would only repeat that decode
    return validate_manifests(manifests, data_cfg, cfg, root, manifests_dir, report_dir, decoded_seconds=probe_seconds)


def validate_manifests(
    manifests: dict[str, pd.DataFrame],
    data_cfg: DataConfig,
    cfg: ValidateConfig,
    root: str | Path,
    manifests_dir: str | Path,
    report_dir: str | Path,
    decoded_seconds: float | None = None,
) -> dict:
    """Quarantine unusable files, run the expectation suites, write reports and (on success)
    manifests_dir/<set>.csv; ValidationFailed naming set, check and rows when a check fails.

    ``decoded_seconds``: the manifests' frames and sizes come from a full decode of every file
    just now (DATA's loaders, which took that long), so files are checked for existence only and
    a decode failure is the loader's error. None: manifests from elsewhere are decoded here when
    ``cfg.check_decode``."""
    if not 0.0 <= cfg.max_quarantined_fraction <= 1.0:
        raise LatentanonError(
            f"validate.max_quarantined_fraction must be in [0, 1], got {cfg.max_quarantined_fraction}"
        )
    root, manifests_dir, report_dir = Path(root), Path(manifests_dir), Path(report_dir)
    # real data may come without classes.json: its classes are then the loaders' (read from
    # each dataset's own files)
    vocab = load_vocabulary(root) if (root / "classes.json").exists() else vocabulary_from_manifests(manifests)
    for set_name, df in manifests.items():
        missing = [c for c in ("video_id", "path") if c not in df.columns]
        if missing:
            raise ValidationFailed(f"set {set_name!r}: schema: manifest lacks {missing}; files cannot be checked")

    started = time.perf_counter()
    quarantine = check_files(manifests, root, cfg.check_decode and decoded_seconds is None)
    decode_seconds = time.perf_counter() - started + (decoded_seconds or 0.0)
    bad = {(s, v) for s, v in zip(quarantine["set"], quarantine["video_id"])}
    kept = {}
    for set_name, df in manifests.items():
        mask = np.array([(set_name, str(v)) not in bad for v in df["video_id"]], dtype=bool)
        kept[set_name] = df.loc[mask].reset_index(drop=True)

    started = time.perf_counter()
    context = _ephemeral_context()
    files_frame, files_checks = readability_checks(manifests, bad, cfg.max_quarantined_fraction)
    outcomes: dict[str, list[CheckOutcome]] = {name: [] for name in manifests}
    for outcome in run_suite(context, "files", files_frame, files_checks):
        outcomes[outcome.set_name].append(outcome)
    for set_name in manifests:
        frame = derive_check_columns(kept[set_name], vocab.classes(set_name))
        other_ids, other_sums = _cross_set_values(kept, set_name)
        checks = build_checks(set_name, frame, vocab, data_cfg, other_ids, other_sums, cfg.require_identity)
        outcomes[set_name] += run_suite(context, f"{set_name}-content", frame, [(set_name, c, e) for c, e in checks])
    report_dir.mkdir(parents=True, exist_ok=True)
    docs_index = build_data_docs(context, report_dir / DATA_DOCS_DIR)
    gx_seconds = time.perf_counter() - started

    failures = [o for items in outcomes.values() for o in items if not o.success]
    report = {
        "success": not failures,
        "check_decode": cfg.check_decode or decoded_seconds is not None,
        "decoded_by": "loaders" if decoded_seconds is not None else ("validate" if cfg.check_decode else "none"),
        "max_quarantined_fraction": cfg.max_quarantined_fraction,
        "files": int(sum(len(df) for df in manifests.values())),
        "quarantined": int(len(quarantine)),
        "decode_seconds": round(decode_seconds, 3),
        "gx_seconds": round(gx_seconds, 3),
        "data_docs": docs_index.relative_to(report_dir).as_posix(),
        "sets": {
            name: {
                "rows": int(len(manifests[name])),
                "kept": int(len(kept[name])),
                "quarantined": int(len(manifests[name]) - len(kept[name])),
                "success": all(o.success for o in items),
                "expectations": [o.to_dict() for o in items],
            }
            for name, items in outcomes.items()
        },
        "quarantine": quarantine.to_dict(orient="records"),
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report_dir / "validation.json", json.dumps(report, indent=2, default=str) + "\n")
    write_text_atomic(report_dir / "summary.md", _summary_markdown(report))
    write_text_atomic(report_dir / "quarantine.csv", quarantine.to_csv(index=False))
    if failures:
        listed = "\n  ".join(o.describe() for o in failures[:LISTED_CHECKS])
        more = f"\n  (+{len(failures) - LISTED_CHECKS} more failed checks)" if len(failures) > LISTED_CHECKS else ""
        raise ValidationFailed(
            f"validation failed, {len(failures)} checks (details in {report_dir / 'summary.md'}):\n  {listed}{more}"
        )

    from latentanon.data.loaders import manifest_hash

    written, hashes = {}, {}
    for set_name, df in kept.items():
        clean = df.drop(columns=["error"]) if "error" in df.columns else df
        written[set_name] = str(write_manifest(clean, manifests_dir, set_name))
        hashes[set_name] = manifest_hash(clean)
    return {
        "success": True,
        "sets": {
            name: {k: v for k, v in entry.items() if k != "expectations"} for name, entry in report["sets"].items()
        },
        "checks": int(sum(len(items) for items in outcomes.values())),
        "files": report["files"],
        "quarantined": report["quarantined"],
        "decode_seconds": report["decode_seconds"],
        "decoded_by": report["decoded_by"],
        "gx_seconds": report["gx_seconds"],
        "data_docs": str(docs_index),
        "manifests": written,
        "manifest_hashes": hashes,
    }
