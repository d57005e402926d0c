"""One loader per dataset layout; each turns the real directory structure and annotation files
into a manifest table (columns in docs/internals.md, layouts in docs/datasets.md).

Annotation problems (a malformed line, an unknown class, a path leaving the dataset root) raise
DataError naming the file and line. A video that is missing or cannot be decoded does not stop
the loader: its row gets frames = -1 and the reason in the `error` column, so the validate stage
can quarantine it with that reason.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from latentanon.data import layouts
from latentanon.data.config import DataConfig
from latentanon.data.layouts import ATTRIBUTE_COLUMNS, UNKNOWN
from latentanon.data.video_io import read_image, scan_video
from latentanon.errors import DataError

BASE_COLUMNS = (
    "video_id", "path", "set", "split", "label", "label_id", "identity",
    "frames", "fps", "width", "height", "checksum", *ATTRIBUTE_COLUMNS,
)
SET_COLUMNS = {"untrimmed": ("segments",), "anomaly": ("segments", "anomaly"), "bias": ("subject",)}
INT_COLUMNS = ("label_id", "identity", "frames", "width", "height", *ATTRIBUTE_COLUMNS, "anomaly", "subject")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def manifest_columns(set_name: str) -> tuple[str, ...]:
    return BASE_COLUMNS + SET_COLUMNS.get(set_name, ()) + ("error",)


# ----------------------------------------------------------------------------- shared helpers

class _Context:
    """What every loader needs: the data root, the set folder, class names and sidecar rows."""

    def __init__(self, cfg: DataConfig, root: Path, set_name: str):
        self.cfg = cfg
        self.root = root.resolve()
        self.set_name = set_name
        self.set_dir = self.root / layouts.SET_DIRS[set_name]
        self.classes = _classes_from_json(self.root, set_name)
        self.sidecar = _read_sidecar(self.set_dir / layouts.SIDECAR_FILE, self.set_dir)

    def inside(self, relative: str, base: Path, source: Path, line: int | None) -> Path:
        """The file a listed path names, refusing any that leaves the data root."""
        where = f"{source}:{line}" if line else str(source)
        if not relative or "\x00" in relative:
            raise DataError(f"{where}: empty or invalid file path {relative!r}")
        candidate = (base / relative).resolve()
        if not candidate.is_relative_to(self.root):
            raise DataError(f"{where}: path {relative!r} escapes the dataset root {self.root}")
        return candidate

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def attributes(self, path: Path) -> dict:
        if not self.sidecar or not path.resolve().is_relative_to(self.set_dir.resolve()):
            return {}
        return self.sidecar.get(path.resolve().relative_to(self.set_dir.resolve()).as_posix(), {})


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with their 1-based numbers; DataError when the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    return [(i + 1, line.strip()) for i, line in enumerate(text.splitlines()) if line.strip()]


def _found(folder: Path) -> str:
    """What a folder holds, for errors that say what was looked for and what is there instead."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    if not names:
        return f"{folder} is empty"
    return f"{folder} holds {', '.join(names[:12])}{f' (+{len(names) - 12} more)' if len(names) > 12 else ''}"


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found ({_found(path.parent)})")
    return path


def _first_dir(base: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of ``names`` that is a folder under ``base`` (today's name or the official
    archive's); DataError listing every name tried and what ``base`` holds instead."""
    for name in names:
        if (base / name).is_dir():
            return base / name
    raise DataError(f"{base}: no {what} folder (looked for {', '.join(n + '/' for n in names)}; {_found(base)})")


def _first_file(base: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (base / name).is_file():
            return base / name
    raise DataError(f"{base}: no {what} (looked for {', '.join(names)}; {_found(base)})")


def _int(value: str, where: str, what: str) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} {value!r} is not a number") from None


def _float(value: str, where: str, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} {value!r} is not a number") from None
    if not np.isfinite(number):
        raise DataError(f"{where}: {what} {value!r} is not finite")
    return number


def _classes_from_json(root: Path, set_name: str) -> list[str] | None:
    path = root / layouts.CLASSES_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        classes = data["sets"][set_name]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: no class list for set {set_name!r} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{path}: sets.{set_name} must be a list of class names")
    return classes


def _read_sidecar(path: Path, set_dir: Path) -> dict[str, dict]:
    """latentanon_sidecar.csv rows keyed by path relative to the set folder; empty when absent."""
    if not path.exists():
        return {}
    rows = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(layouts.SIDECAR_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}")
        for number, row in enumerate(reader, start=2):
            where = f"{path}:{number}"
            key = row["path"]
            if not key or ".." in Path(key).parts or Path(key).is_absolute():
                raise DataError(f"{where}: invalid path {key!r} (must stay inside {set_dir})")
            rows[Path(key).as_posix()] = {
                col: _int(row[col], where, col) if row[col] not in ("", None) else UNKNOWN
                for col in layouts.SIDECAR_COLUMNS[1:]
            }
    return rows


def _checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def probe_file(path: Path) -> dict:
    """frames, fps, size and checksum of a video or image; failures go to `error`, never raise."""
    info = {"frames": -1, "fps": 0.0, "width": -1, "height": -1, "checksum": "", "error": ""}
    if not path.is_file():
        info["error"] = "file not found"
        return info
    info["checksum"] = _checksum(path)
    try:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            image = read_image(path)
            info.update(frames=1, fps=0.0, height=int(image.shape[0]), width=int(image.shape[1]))
        else:
            meta = scan_video(path)
            info.update(frames=meta["frames"], fps=meta["fps"], height=meta["height"], width=meta["width"])
    except DataError as exc:
        info["error"] = str(exc)
    return info


def _label_id(classes: list[str], label: str, where: str) -> int:
    if label not in classes:
        raise DataError(f"{where}: unknown class {label!r} (known: {', '.join(classes[:8])}{'...' if len(classes) > 8 else ''})")
    return classes.index(label)


def _record(ctx: _Context, path: Path, video_id: str, split: str, label: str, label_id: int,
            identity: int = UNKNOWN, **extra) -> dict:
    """A manifest row without the probe columns; sidecar values fill what the layout lacks."""
    side = ctx.attributes(path)
    row = {
        "video_id": video_id, "path": ctx.rel(path), "set": ctx.set_name, "split": split,
        "label": label, "label_id": label_id,
        "identity": side.get("identity", UNKNOWN) if side.get("identity", UNKNOWN) != UNKNOWN else identity,
    }
    for col in ATTRIBUTE_COLUMNS:
        row[col] = extra.pop(col, UNKNOWN)
        if row[col] == UNKNOWN:
            row[col] = side.get(col, UNKNOWN)
    row.update(extra)
    return row


# ----------------------------------------------------------------------------- Kinetics-400

def load_kinetics(ctx: _Context) -> list[dict]:
    """annotations/{train,validate,test}.csv; videos at {train,val,test}/<label>/<id>_<s:06d>_<e:06d>.mp4."""
    sources = [("train.csv", "train", "train"), ("validate.csv", "val", "val"), ("test.csv", "test", "test")]
    entries = []
    for name, split, folder in sources:
        path = ctx.set_dir / "annotations" / name
        if not path.exists():
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"label", "youtube_id", "time_start", "time_end"} - set(reader.fieldnames or ())
            if missing:
                raise DataError(f"{path}: missing columns {sorted(missing)}")
            for number, row in enumerate(reader, start=2):
                where = f"{path}:{number}"
                start = _int(row["time_start"], where, "time_start")
                end = _int(row["time_end"], where, "time_end")
                if not row["label"] or not row["youtube_id"]:
                    raise DataError(f"{where}: empty label or youtube_id")
                entries.append((path, number, split, folder, row["label"], row["youtube_id"], start, end))
    if not entries:
        raise DataError(f"{ctx.set_dir / 'annotations'}: no train.csv / validate.csv found")
    classes = ctx.classes or sorted({e[4] for e in entries})
    rows = []
    for path, number, split, folder, label, yid, start, end in entries:
        stem = f"{yid}_{start:06d}_{end:06d}"
        file = ctx.inside(f"{folder}/{label}/{stem}.mp4", ctx.set_dir, path, number)
        rows.append(_record(ctx, file, stem, split, label, _label_id(classes, label, f"{path}:{number}")))
    return rows


# ----------------------------------------------------------------------------- UCF101

UCF101_VIDEO_DIRS = ("UCF101", "UCF-101")     # ours, the official archive's
_UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)\.\w+$")


def load_ucf101(ctx: _Context) -> list[dict]:
    """ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt; videos at UCF101/<Class>/v_<Class>_gGG_cCC.*
    (the official archive's UCF-101/ folder name works too).

    The group gGG is the actor identity (as in real UCF101)."""
    lists = _first_dir(ctx.set_dir, ("ucfTrainTestlist",), "UCF101 split list")
    # the annotation lists are checked first; a missing video folder is reported after them
    videos = next((ctx.set_dir / d for d in UCF101_VIDEO_DIRS if (ctx.set_dir / d).is_dir()), None)
    base = videos or ctx.set_dir / UCF101_VIDEO_DIRS[0]
    class_file = _require(lists / "classInd.txt")
    classes = []
    for number, line in _read_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or _int(parts[0], f"{class_file}:{number}", "class index") != len(classes) + 1:
            raise DataError(f"{class_file}:{number}: expected '<index> <ClassName>' numbered from 1, got {line!r}")
        classes.append(parts[1])
    rows = []
    for name, split in (("trainlist01.txt", "train"), ("testlist01.txt", "test")):
        listing = _require(lists / name)
        for number, line in _read_lines(listing):
            where = f"{listing}:{number}"
            parts = line.split()
            entry = parts[0]
            label = entry.split("/")[0] if "/" in entry else ""
            label_id = _label_id(classes, label, where)
            if len(parts) > 1 and _int(parts[1], where, "class index") != label_id + 1:
                raise DataError(f"{where}: class index {parts[1]} does not match {label!r} in {class_file.name}")
            match = _UCF_NAME.match(Path(entry).name)
            if not match or match["cls"] != label:
                raise DataError(f"{where}: {entry!r} is not named <Class>/v_<Class>_gGG_cCC.<ext>")
            file = ctx.inside(entry, base, listing, number)
            rows.append(_record(ctx, file, Path(entry).stem, split, label, label_id, int(match["group"])))
    if videos is None:
        _first_dir(ctx.set_dir, UCF101_VIDEO_DIRS, "UCF101 video")      # raises, naming what is there
    return rows


# ----------------------------------------------------------------------------- HMDB51 + PA-HMDB51

HMDB_VIDEO_DIRS = ("hmdb51", "hmdb51_org")    # ours, the official archive's
_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split1\.txt$")


def _pa_value(spans, where: str, attribute: str) -> int:
    """The value covering most frames among PA-HMDB51 spans [first, last, value]."""
    best, best_len = None, -1
    for span in spans:
        if not (isinstance(span, list) and len(span) == 3 and all(isinstance(v, (int, float)) for v in span)):
            raise DataError(f"{where}: {attribute} span {span!r} is not [first_frame, last_frame, value]")
        length = span[1] - span[0] + 1
        if length > best_len:
            best, best_len = int(span[2]), length
    if best is None:
        return UNKNOWN
    if attribute == "face":
        return best                       # 0 none, 1 partial, 2 complete: our face ids
    return best - 1 if best > 0 else UNKNOWN   # 0 = cannot tell


def _read_pa_hmdb(folder: Path, classes: list[str]) -> dict[str, dict]:
    """PrivacyAttributes/<class>.json -> {video stem: {attribute: class id}}."""
    found = {}
    if not folder.is_dir():
        return found
    names = {"face": "face", "gender": "gender", "skin_color": "skin_tone", "clothing": "clothing"}
    for path in sorted(folder.glob("*.json")):
        _label_id(classes, path.stem, str(path))
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected an object keyed by video name")
        for video, attrs in data.items():
            if not isinstance(attrs, dict):
                raise DataError(f"{path}: entry {video!r} is not an object")
            found[Path(video).stem] = {
                ours: _pa_value(attrs[theirs], f"{path}: {video}", theirs)
                for theirs, ours in names.items() if theirs in attrs
            }
    return found


def load_hmdb51(ctx: _Context) -> list[dict]:
    """testTrainMulti_7030_splits/<class>_test_split1.txt ('<name> 1|2|0'); videos at
    hmdb51/<class>/<name> (or the official archive's hmdb51_org/<class>/<name>)."""
    split_dir = _first_dir(ctx.set_dir, ("testTrainMulti_7030_splits",), "HMDB51 split list")
    files = sorted(split_dir.glob("*_test_split1.txt"))
    if not files:
        raise DataError(f"{split_dir}: no <class>_test_split1.txt files ({_found(split_dir)})")
    videos = next((ctx.set_dir / d for d in HMDB_VIDEO_DIRS if (ctx.set_dir / d).is_dir()), None)
    base = videos or ctx.set_dir / HMDB_VIDEO_DIRS[0]
    classes = ctx.classes or sorted(_HMDB_SPLIT.match(f.name)["cls"] for f in files)
    attributes = _read_pa_hmdb(ctx.set_dir / "PrivacyAttributes", classes)
    rows = []
    for listing in files:
        label = _HMDB_SPLIT.match(listing.name)["cls"]
        label_id = _label_id(classes, label, str(listing))
        for number, line in _read_lines(listing):
            where = f"{listing}:{number}"
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{where}: expected '<video> 0|1|2', got {line!r}")
            if parts[1] == "0":
                continue                   # not used in split 1
            file = ctx.inside(f"{label}/{parts[0]}", base, listing, number)
            split = "train" if parts[1] == "1" else "test"
            attrs = attributes.get(Path(parts[0]).stem, {})
            rows.append(_record(ctx, file, Path(parts[0]).stem, split, label, label_id, **attrs))
    if videos is None:
        _first_dir(ctx.set_dir, HMDB_VIDEO_DIRS, "HMDB51 video")        # raises, naming what is there
    return rows


# ----------------------------------------------------------------------------- VISPR

VISPR_SPLITS = {"train2017": "train", "val2017": "val", "test2017": "test"}
_VALUE_LABEL = re.compile(r"^(?P<attr>skin_tone|gender|clothing)_(?P<value>\d+)$")


def _vispr_attributes(labels: list, where: str) -> dict:
    attrs = {"face": 0}
    for label in labels:
        if not isinstance(label, str):
            raise DataError(f"{where}: label {label!r} is not a string")
        if label == "a9_face_complete":
            attrs["face"] = 2
        elif label == "a10_face_partial" and attrs["face"] != 2:
            attrs["face"] = 1
        elif match := _VALUE_LABEL.match(label):
            attrs[match["attr"]] = int(match["value"])
    return attrs


def load_vispr(ctx: _Context) -> list[dict]:
    """annotations/{train,val,test}2017/<id>.json with 'labels'; images at images/<split>/<id>.*."""
    rows = []
    for folder, split in VISPR_SPLITS.items():
        notes = ctx.set_dir / "annotations" / folder
        if not notes.is_dir():
            continue
        for path in sorted(notes.glob("*.json")):
            try:
                note = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: not valid JSON ({exc})") from exc
            if not isinstance(note, dict) or not isinstance(note.get("labels"), list):
                raise DataError(f"{path}: expected an object with a 'labels' list")
            image = note.get("image_path")
            if image:
                file = ctx.inside(image, ctx.set_dir, path, None)
            else:
                matches = sorted((ctx.set_dir / "images" / folder).glob(f"{path.stem}.*"))
                file = matches[0] if matches else ctx.set_dir / "images" / folder / f"{path.stem}.jpg"
            rows.append(_record(ctx, file, path.stem, split, "", UNKNOWN, **_vispr_attributes(note["labels"], str(path))))
    if not rows:
        raise DataError(f"{ctx.set_dir / 'annotations'}: no {'/'.join(VISPR_SPLITS)} annotation files")
    return rows


# ----------------------------------------------------------------------------- THUMOS14

_THUMOS_NOTE = re.compile(r"^(?P<cls>.+)_(?P<tag>val|test)\.txt$")


# Per split: (our folder, tag, annotation folders, video folders); ours first, then the official archives'.
THUMOS_SPLITS = (
    ("validation", "val",
     ("annotation/validation", "TH14_Temporal_annotations_validation/annotation"),
     ("videos/validation", "validation", "TH14_validation_set_mp4")),
    ("test", "test",
     ("annotation/test", "TH14_Temporal_annotations_test/annotation",
      "TH14_Temporal_Annotations_Test/annotations/annotation", "TH14_Temporal_Annotations_Test/annotation"),
     ("videos/test", "test", "TH14_test_set_mp4")),
)


def load_thumos14(ctx: _Context) -> list[dict]:
    """annotation/{validation,test}/<Class>_{val,test}.txt ('<video> <start_s> <end_s>') and videos
    at videos/{validation,test}/<video>.mp4, or the official archives' folders
    TH14_Temporal_annotations_{validation,test}/annotation/ and validation/, test/. Only annotated
    videos are listed; a split without an annotation folder is left out."""
    segments: dict[tuple[str, Path], list] = {}
    seen_classes = set()
    tried = []
    for folder, tag, note_dirs, video_dirs in THUMOS_SPLITS:
        tried += note_dirs
        notes = next((ctx.set_dir / d for d in note_dirs if (ctx.set_dir / d).is_dir()), None)
        if notes is None:
            continue
        # annotation lines are checked first; a missing video folder is reported after them
        videos = next((ctx.set_dir / d for d in video_dirs if (ctx.set_dir / d).is_dir()), None)
        base = videos or ctx.set_dir / video_dirs[0]
        for path in sorted(notes.glob("*.txt")):
            match = _THUMOS_NOTE.match(path.name)
            if not match or match["tag"] != tag:
                raise DataError(f"{path}: expected <Class>_{tag}.txt")
            label = match["cls"]
            if label == "Ambiguous":
                continue                   # THUMOS marks unclear spans; not a class
            if ctx.classes is not None:
                _label_id(ctx.classes, label, str(path))
            seen_classes.add(label)
            for number, line in _read_lines(path):
                where = f"{path}:{number}"
                parts = line.split()
                if len(parts) != 3:
                    raise DataError(f"{where}: expected '<video> <start_s> <end_s>', got {line!r}")
                start, end = _float(parts[1], where, "start"), _float(parts[2], where, "end")
                if start < 0 or end <= start:
                    raise DataError(f"{where}: interval [{start}, {end}] is empty or negative")
                file = ctx.inside(f"{parts[0]}.mp4", base, path, number)
                segments.setdefault((folder, file), []).append([start, end, label])
        if videos is None and any(key[0] == folder for key in segments):
            _first_dir(ctx.set_dir, video_dirs, f"THUMOS14 {folder} video")     # raises, naming what is there
    if not segments:
        raise DataError(f"{ctx.set_dir}: no annotated THUMOS14 videos (looked for annotation folders "
                        f"{', '.join(d + '/' for d in tried)}; {_found(ctx.set_dir)})")
    rows = []
    for (folder, file), spans in sorted(segments.items()):
        split = "test" if folder == "test" else "train"
        spans = sorted(spans, key=lambda s: (s[0], s[1]))
        rows.append(_record(ctx, file, file.stem, split, "", UNKNOWN, segments=json.dumps(spans)))
    return rows


# ----------------------------------------------------------------------------- UCF-Crime

NORMAL = "Normal"


def _crime_temporal(path: Path, classes: list[str]) -> dict[str, tuple[str, list[tuple[int, int]]]]:
    """'<video> <Class> s1 e1 s2 e2' in frames, -1 for no interval."""
    found = {}
    if not path.exists():
        return found
    for number, line in _read_lines(path):
        where = f"{path}:{number}"
        parts = line.split()
        if len(parts) != 6:
            raise DataError(f"{where}: expected '<video> <Class> s1 e1 s2 e2', got {line!r}")
        _label_id(classes, parts[1], where)
        bounds = [_int(v, where, "frame") for v in parts[2:]]
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


def _crime_file(ctx: _Context, entry: str, label: str) -> Path:
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


def load_ucf_crime(ctx: _Context) -> list[dict]:
    """Anomaly_Train.txt / Anomaly_Test.txt entries '<Class>/<video>' (anomalies, under
    Anomaly-Videos/ or the archive's Anomaly-Videos-Part-*/) or '<normal folder>/<video>'
    (Training_Normal_Videos_Anomaly/ or the archive's Training-Normal-Videos-Part-*/,
    Testing_Normal_Videos_Anomaly/); temporal test annotations in frames."""
    list_dir = next((ctx.set_dir / d for d in CRIME_LIST_DIRS if (ctx.set_dir / d / "Anomaly_Train.txt").is_file()),
                    None)
    if list_dir is None:
        looked = ", ".join(str(Path(d) / "Anomaly_Train.txt") for d in CRIME_LIST_DIRS)
        raise DataError(f"{ctx.set_dir}: no UCF-Crime split list (looked for {looked}; {_found(ctx.set_dir)})")
    listed = []
    for name, split in (("Anomaly_Train.txt", "train"), ("Anomaly_Test.txt", "test")):
        listing = _require(list_dir / name)
        for number, line in _read_lines(listing):
            entry = line.split()[0]
            folder = entry.split("/")[0] if "/" in entry else ""
            label = NORMAL if (folder.startswith(("Training_Normal", "Testing_Normal")) or Path(entry).name.startswith("Normal")) else folder
            listed.append((listing, number, entry, split, label))
    classes = ctx.classes or [NORMAL] + sorted({e[4] for e in listed} - {NORMAL})
    temporal_file = next((d / CRIME_TEMPORAL_FILE for d in (ctx.set_dir, list_dir, ctx.set_dir / "Temporal_Anomaly_Annotation")
                          if (d / CRIME_TEMPORAL_FILE).is_file()), ctx.set_dir / CRIME_TEMPORAL_FILE)
    temporal = _crime_temporal(temporal_file, classes)
    temporal.update({k: v for k, v in _crime_temporal(ctx.set_dir / layouts.TEMPORAL_TRAIN_FILE, classes).items()
                     if k not in temporal})
    rows = []
    for listing, number, entry, split, label in listed:
        where = f"{listing}:{number}"
        label_id = _label_id(classes, label, where)
        ctx.inside(entry, ctx.set_dir, listing, number)        # refuses entries leaving the root
        file = _crime_file(ctx, entry, label)
        stem = Path(entry).stem
        note = temporal.get(stem)
        if note and note[0] != label:
            raise DataError(f"{where}: {entry} is listed as {label!r} but its temporal annotation says {note[0]!r}")
        rows.append(_record(ctx, file, stem, split, label, label_id, anomaly=int(label != NORMAL),
                            frame_spans=note[1] if note else None))
    if rows and not any((ctx.root / row["path"]).exists() for row in rows):
        raise DataError(f"{ctx.set_dir}: none of the {len(rows)} listed UCF-Crime videos found (looked under the "
                        f"listed folders and {', '.join(p + '/' for p in CRIME_VIDEO_GLOBS)}; {_found(ctx.set_dir)})")
    return rows


# ----------------------------------------------------------------------------- NTU RGB+D

_NTU_NAME = re.compile(r"^S(?P<s>\d{3})C(?P<c>\d{3})P(?P<p>\d{3})R(?P<r>\d{3})A(?P<a>\d{3})_rgb\.\w+$")


def load_ntu(ctx: _Context) -> list[dict]:
    """nturgb+d_rgb/SsssCcccPpppRrrrAaaa_rgb.*; subject P is the identity; gender from
    latentanon_subjects.csv; cross-subject split from latentanon_cross_subject_train.txt or the
    standard NTU RGB+D 60 list."""
    folder = ctx.set_dir / "nturgb+d_rgb"
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    if not files:
        raise DataError(f"{folder}: no videos")
    genders = {}
    subjects_file = ctx.set_dir / layouts.SUBJECTS_FILE
    if subjects_file.exists():
        lines = _read_lines(subjects_file)
        if not lines or lines[0][1].replace(" ", "") != "subject,gender":
            raise DataError(f"{subjects_file}: expected header 'subject,gender'")
        for number, line in lines[1:]:
            where = f"{subjects_file}:{number}"
            parts = line.split(",")
            if len(parts) != 2:
                raise DataError(f"{where}: expected '<subject>,<gender id>', got {line!r}")
            genders[_int(parts[0], where, "subject")] = _int(parts[1], where, "gender")
    train_file = ctx.set_dir / layouts.CROSS_SUBJECT_FILE
    if train_file.exists():
        train_subjects = {_int(line, f"{train_file}:{n}", "subject") for n, line in _read_lines(train_file)}
    else:
        train_subjects = set(layouts.NTU_CROSS_SUBJECT_TRAIN)
    rows = []
    for path in files:
        match = _NTU_NAME.match(path.name)
        if not match:
            raise DataError(f"{path}: not named SsssCcccPpppRrrrAaaa_rgb.<ext>")
        action, subject = int(match["a"]), int(match["p"])
        if ctx.classes is not None:
            if not 1 <= action <= len(ctx.classes):
                raise DataError(f"{path}: unknown action A{action:03d} ({len(ctx.classes)} classes in classes.json)")
            label = ctx.classes[action - 1]
        else:
            label = f"A{action:03d}"
        split = "train" if subject in train_subjects else "test"
        extra = {"gender": genders[subject]} if subject in genders else {}
        rows.append(_record(ctx, path, path.stem, split, label, action - 1, subject, subject=subject, **extra))
    return rows


LOADERS: dict[str, Callable[[_Context], list[dict]]] = {
    "pretrain": load_kinetics,
    "actions": load_ucf101,
    "privacy_videos": load_hmdb51,
    "privacy_images": load_vispr,
    "untrimmed": load_thumos14,
    "anomaly": load_ucf_crime,
    "bias": load_ntu,
}


# ----------------------------------------------------------------------------- manifests

def _assign_validation(frame: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """Hold validation identities out of the official training split (layouts.held_out_identities)."""
    fraction = layouts.val_fraction(cfg.n_identities_train, cfg.n_identities_val)
    train = frame["split"] == "train"
    if frame.loc[frame["split"] == "val"].shape[0] or not train.any():
        return frame                       # the layout has its own validation split
    held = layouts.held_out_identities(frame.loc[train, "identity"], fraction)
    unknown = frame["identity"] == UNKNOWN
    to_val = train & (frame["identity"].isin(held) | (unknown & frame["video_id"].map(
        lambda v: layouts.hashed_to_val(str(v), fraction))))
    frame.loc[to_val, "split"] = "val"
    return frame


def load_set(cfg: DataConfig, root: Path, set_name: str, progress: bool = True) -> pd.DataFrame:
    """The manifest of one set: annotation rows, probed files, validation split, typed columns."""
    if set_name not in LOADERS:
        raise DataError(f"unknown set {set_name!r}; sets: {', '.join(layouts.SETS)}")
    ctx = _Context(cfg, Path(root), set_name)
    if not ctx.set_dir.is_dir():
        raise DataError(f"{ctx.set_dir}: set folder not found")
    rows = LOADERS[set_name](ctx)
    if not rows:
        raise DataError(f"{ctx.set_dir}: the annotation files list no videos")
    # threads: the decode and the checksum run in C outside the GIL (1.35x on two cores, measured)
    with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
        probed = pool.map(probe_file, [ctx.root / row["path"] for row in rows])
        for row, info in tqdm(zip(rows, probed), total=len(rows), desc=f"probe {set_name}", unit="file",
                              disable=None if progress else True):
            row.update(info)
    for row in rows:
        spans = row.pop("frame_spans", None)
        if set_name == "anomaly":
            fps = row["fps"] if row["fps"] > 0 else float(cfg.fps)
            label = row["label"]
            row["segments"] = json.dumps([[round(s / fps, 4), round((e + 1) / fps, 4), label] for s, e in spans or []])
    frame = pd.DataFrame(rows)
    for column in manifest_columns(set_name):
        if column not in frame:
            frame[column] = UNKNOWN if column in INT_COLUMNS else ""
    frame = frame[list(manifest_columns(set_name))]
    for column in INT_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("int64")
    frame["fps"] = frame["fps"].astype("float64")
    duplicated = frame["video_id"].duplicated(keep=False)
    if duplicated.any():
        raise DataError(f"{ctx.set_dir}: duplicate video ids {sorted(frame.loc[duplicated, 'video_id'].unique())[:5]}")
    frame = _assign_validation(frame, cfg)
    return frame.sort_values("path").reset_index(drop=True)


def build_manifests(cfg: DataConfig, root: Path) -> dict[str, pd.DataFrame]:
    """One manifest per set found under root (folders named as in layouts.SET_DIRS)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root not found (run `latentanon generate` or point data.root at the datasets)")
    present = [s for s in layouts.SETS if (root / layouts.SET_DIRS[s]).is_dir()]
    if not present:
        raise DataError(f"{root}: none of the set folders {', '.join(layouts.SET_DIRS.values())} exists")
    return {s: load_set(cfg, root, s) for s in present}


def _canonical(value, column: str):
    if column == "segments" and isinstance(value, str):
        value = json.loads(value) if value else []
    if isinstance(value, (list, tuple, np.ndarray)):
        return json.dumps([_canonical(v, "") for v in value], separators=(",", ":"))
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return format(float(value), ".6g") if np.isfinite(float(value)) else ""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def manifest_hash(df: pd.DataFrame) -> str:
    """A stable hash of a manifest's content: independent of row order, column order and of
    whether numbers and segments were read back from CSV or are still in memory."""
    columns = sorted(df.columns)
    lines = [
        "\x1f".join(_canonical(row[c], c) for c in columns)
        for row in df[columns].to_dict(orient="records")
    ]
    digest = hashlib.sha256()
    digest.update("\x1f".join(columns).encode())
    for line in sorted(lines):
        digest.update(b"\n" + line.encode())
    return digest.hexdigest()[:16]
