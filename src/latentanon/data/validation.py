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
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from latentanon._files import write_text_atomic
from latentanon.data.config import DataConfig, ValidateConfig
from latentanon.data.expectations import _identities, _is_image, build_checks, derive_check_columns, readability_checks
from latentanon.data.gx_runner import CheckOutcome, _ephemeral_context, build_data_docs, run_suite
from latentanon.data.manifests import write_manifest
from latentanon.data.vocabulary import load_vocabulary, vocabulary_from_manifests
from latentanon.errors import DataError, LatentanonError, ValidationFailed

QUARANTINE_COLUMNS = ("set", "video_id", "path", "reason")
# Failed checks listed in the stage's error message (all are in the reports).
LISTED_CHECKS = 20
DATA_DOCS_DIR = "data_docs"  # great-expectations' HTML report, under the validate report folder


# ----------------------------------------------------------------------------------------------
# Files: existence and decode (the quarantine)


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
