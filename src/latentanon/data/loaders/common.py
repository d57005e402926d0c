"""What every dataset loader shares: the manifest columns, the loader context (data root, set
folder, classes, sidecar rows, the containment check) and the small parsing helpers."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np

from latentanon.data import layouts
from latentanon.data.config import DataConfig
from latentanon.data.layouts import ATTRIBUTE_COLUMNS, IMAGE_SUFFIXES, UNKNOWN
from latentanon.data.manifests import INTEGER_COLUMNS, REQUIRED_COLUMNS
from latentanon.data.video_io import read_image, scan_video
from latentanon.errors import DataError

# The manifest schema lives in data.manifests; a loader's rows add the attributes.
BASE_COLUMNS = (*REQUIRED_COLUMNS, *ATTRIBUTE_COLUMNS)
SET_COLUMNS = {"untrimmed": ("segments",), "anomaly": ("segments", "anomaly"), "bias": ("subject",)}
INT_COLUMNS = tuple(sorted(INTEGER_COLUMNS))


def manifest_columns(set_name: str) -> tuple[str, ...]:
    return BASE_COLUMNS + SET_COLUMNS.get(set_name, ()) + ("error",)


# ----------------------------------------------------------------------------- shared helpers


def contained_path(root: Path, relative: str, where: str, base: Path | None = None) -> Path:
    """``base / relative`` (base: the root) resolved, refusing a path that leaves the data root:
    the one rule for every path a listing or a manifest names (the loaders and extraction)."""
    root = Path(root).resolve()
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise DataError(f"{where}: empty or invalid file path {relative!r}")
    candidate = ((base or root) / relative).resolve()
    if not candidate.is_relative_to(root):
        raise DataError(f"{where}: path {relative!r} escapes the dataset root {root}")
    return candidate


class LoaderContext:
    """What every loader needs: the data root, the set folder, class names and sidecar rows."""

    def __init__(self, cfg: DataConfig, root: Path, set_name: str):
        self.cfg = cfg
        self.root = root.resolve()
        self.set_name = set_name
        self.set_dir = self.root / layouts.SET_DIRS[set_name]
        self.classes = classes_from_json(self.root, set_name)
        self.sidecar = read_sidecar(self.set_dir / layouts.SIDECAR_FILE, self.set_dir)

    def inside(self, relative: str, base: Path, source: Path, line: int | None) -> Path:
        """The file a listed path names, refusing any that leaves the data root."""
        return contained_path(self.root, relative, f"{source}:{line}" if line else str(source), base)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def attributes(self, path: Path) -> dict:
        if not self.sidecar or not path.resolve().is_relative_to(self.set_dir.resolve()):
            return {}
        return self.sidecar.get(path.resolve().relative_to(self.set_dir.resolve()).as_posix(), {})


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with their 1-based numbers; DataError when the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    return [(i + 1, line.strip()) for i, line in enumerate(text.splitlines()) if line.strip()]


def folder_contents(folder: Path) -> str:
    """What a folder holds, for errors that say what was looked for and what is there instead."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    if not names:
        return f"{folder} is empty"
    return f"{folder} holds {', '.join(names[:12])}{f' (+{len(names) - 12} more)' if len(names) > 12 else ''}"


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found ({folder_contents(path.parent)})")
    return path


def first_dir(base: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of ``names`` that is a folder under ``base`` (today's name or the official
    archive's); DataError listing every name tried and what ``base`` holds instead."""
    for name in names:
        if (base / name).is_dir():
            return base / name
    raise DataError(
        f"{base}: no {what} folder (looked for {', '.join(n + '/' for n in names)}; {folder_contents(base)})"
    )


def first_file(base: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (base / name).is_file():
            return base / name
    raise DataError(f"{base}: no {what} (looked for {', '.join(names)}; {folder_contents(base)})")


def parse_int(value: str, where: str, what: str) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} {value!r} is not a number") from None


def parse_float(value: str, where: str, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} {value!r} is not a number") from None
    if not np.isfinite(number):
        raise DataError(f"{where}: {what} {value!r} is not finite")
    return number


def classes_from_json(root: Path, set_name: str) -> list[str] | None:
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


def read_sidecar(path: Path, set_dir: Path) -> dict[str, dict]:
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
                col: parse_int(row[col], where, col) if row[col] not in ("", None) else UNKNOWN
                for col in layouts.SIDECAR_COLUMNS[1:]
            }
    return rows


def file_checksum(path: Path) -> str:
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
    info["checksum"] = file_checksum(path)
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


def label_index(classes: list[str], label: str, where: str) -> int:
    if label not in classes:
        raise DataError(
            f"{where}: unknown class {label!r} (known: {', '.join(classes[:8])}{'...' if len(classes) > 8 else ''})"
        )
    return classes.index(label)


def manifest_row(
    ctx: LoaderContext,
    path: Path,
    video_id: str,
    split: str,
    label: str,
    label_id: int,
    identity: int = UNKNOWN,
    **extra,
) -> dict:
    """A manifest row without the probe columns; sidecar values fill what the layout lacks."""
    side = ctx.attributes(path)
    row = {
        "video_id": video_id,
        "path": ctx.rel(path),
        "set": ctx.set_name,
        "split": split,
        "label": label,
        "label_id": label_id,
        "identity": side.get("identity", UNKNOWN) if side.get("identity", UNKNOWN) != UNKNOWN else identity,
    }
    for col in ATTRIBUTE_COLUMNS:
        row[col] = extra.pop(col, UNKNOWN)
        if row[col] == UNKNOWN:
            row[col] = side.get(col, UNKNOWN)
    row.update(extra)
    return row
