"""UCF-Crime: surveillance videos, video-level training lists, temporal test annotations."""

from __future__ import annotations

from pathlib import Path

from latentanon.data import layouts
from latentanon.data.loaders.common import (
    LoaderContext,
    folder_contents,
    label_index,
    manifest_row,
    parse_int,
    read_lines,
    require_file,
)
from latentanon.errors import DataError

NORMAL = "Normal"


def _crime_temporal(path: Path, classes: list[str]) -> dict[str, tuple[str, list[tuple[int, int]]]]:
    """'<video> <Class> s1 e1 s2 e2' in frames, -1 for no interval."""
    found: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    if not path.exists():
        return found
    for number, line in read_lines(path):
        where = f"{path}:{number}"
        parts = line.split()
        if len(parts) != 6:
            raise DataError(f"{where}: expected '<video> <Class> s1 e1 s2 e2', got {line!r}")
        label_index(classes, parts[1], where)
        bounds = [parse_int(v, where, "frame") for v in parts[2:]]
        spans = []
        for s, e in (bounds[:2], bounds[2:]):
            if s == -1 and e == -1:
                continue
            if s < 0 or e < s:
                raise DataError(f"{where}: interval [{s}, {e}] is not a valid frame interval")
            spans.append((s, e))
        found[Path(parts[0]).stem] = (parts[1], spans)
    return found


# Where the split lists may sit: the set folder, or as unpacked from UCF_Crimes-Train-Test-Split.zip.
CRIME_LIST_DIRS = (".", "Anomaly_Detection_splits", "UCF_Crimes-Train-Test-Split/Anomaly_Detection_splits")
CRIME_TEMPORAL_FILE = "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
# Folders the videos of a list entry '<folder>/<video>' may sit in: anomaly classes under
# Anomaly-Videos/ (ours) or the archive parts Anomaly-Videos-Part-*/, training normals under
# Training-Normal-Videos-Part-*/ (the lists say Training_Normal_Videos_Anomaly/).
CRIME_VIDEO_GLOBS = ("Anomaly-Videos", "Anomaly-Videos-Part-*", "Training-Normal-Videos-Part-*")


def _crime_file(ctx: LoaderContext, entry: str, label: str) -> Path:
    """The video a list entry names: as listed under the set folder when it is there, else under
    one of the archive folders (CRIME_VIDEO_GLOBS); the listed place when it is nowhere (the probe
    then records it as missing)."""
    listed = ctx.set_dir / entry
    if listed.exists():
        return listed
    folder, name = (entry.split("/", 1) + [""])[:2] if "/" in entry else ("", entry)
    for pattern in CRIME_VIDEO_GLOBS:
        for base in sorted(ctx.set_dir.glob(pattern)):
            for candidate in (base / entry, base / name):
                if candidate.exists():
                    return candidate
    if label != NORMAL and (ctx.set_dir / "Anomaly-Videos").is_dir():
        return ctx.set_dir / "Anomaly-Videos" / entry
    return listed


def load_ucf_crime(ctx: LoaderContext) -> list[dict]:
    """Anomaly_Train.txt / Anomaly_Test.txt entries '<Class>/<video>' (anomalies, under
    Anomaly-Videos/ or the archive's Anomaly-Videos-Part-*/) or '<normal folder>/<video>'
    (Training_Normal_Videos_Anomaly/ or the archive's Training-Normal-Videos-Part-*/,
    Testing_Normal_Videos_Anomaly/); temporal test annotations in frames."""
    list_dir = next(
        (ctx.set_dir / d for d in CRIME_LIST_DIRS if (ctx.set_dir / d / "Anomaly_Train.txt").is_file()), None
    )
    if list_dir is None:
        looked = ", ".join(str(Path(d) / "Anomaly_Train.txt") for d in CRIME_LIST_DIRS)
        raise DataError(f"{ctx.set_dir}: no UCF-Crime split list (looked for {looked}; {folder_contents(ctx.set_dir)})")
    listed = []
    for name, split in (("Anomaly_Train.txt", "train"), ("Anomaly_Test.txt", "test")):
        listing = require_file(list_dir / name)
        for number, line in read_lines(listing):
            entry = line.split()[0]
            folder = entry.split("/")[0] if "/" in entry else ""
            label = (
                NORMAL
                if (folder.startswith(("Training_Normal", "Testing_Normal")) or Path(entry).name.startswith("Normal"))
                else folder
            )
            listed.append((listing, number, entry, split, label))
    classes = ctx.classes or [NORMAL] + sorted({e[4] for e in listed} - {NORMAL})
    temporal_file = next(
        (
            d / CRIME_TEMPORAL_FILE
            for d in (ctx.set_dir, list_dir, ctx.set_dir / "Temporal_Anomaly_Annotation")
            if (d / CRIME_TEMPORAL_FILE).is_file()
        ),
        ctx.set_dir / CRIME_TEMPORAL_FILE,
    )
    temporal = _crime_temporal(temporal_file, classes)
    temporal.update(
        {
            k: v
            for k, v in _crime_temporal(ctx.set_dir / layouts.TEMPORAL_TRAIN_FILE, classes).items()
            if k not in temporal
        }
    )
    rows = []
    for listing, number, entry, split, label in listed:
        where = f"{listing}:{number}"
        label_id = label_index(classes, label, where)
        ctx.inside(entry, ctx.set_dir, listing, number)  # refuses entries leaving the root
        file = _crime_file(ctx, entry, label)
        stem = Path(entry).stem
        note = temporal.get(stem)
        if note and note[0] != label:
            raise DataError(f"{where}: {entry} is listed as {label!r} but its temporal annotation says {note[0]!r}")
        rows.append(
            manifest_row(
                ctx,
                file,
                stem,
                split,
                label,
                label_id,
                anomaly=int(label != NORMAL),
                frame_spans=note[1] if note else None,
            )
        )
    if rows and not any((ctx.root / row["path"]).exists() for row in rows):
        raise DataError(
            f"{ctx.set_dir}: none of the {len(rows)} listed UCF-Crime videos found (looked under the "
            f"listed folders and {', '.join(p + '/' for p in CRIME_VIDEO_GLOBS)}; {folder_contents(ctx.set_dir)})"
        )
    return rows
