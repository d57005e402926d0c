"""HMDB51 videos with PA-HMDB51 per-video private attributes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from latentanon.data.layouts import UNKNOWN
from latentanon.data.loaders.common import (
    LoaderContext,
    first_dir,
    folder_contents,
    label_index,
    manifest_row,
    read_lines,
)
from latentanon.errors import DataError

HMDB_VIDEO_DIRS = ("hmdb51", "hmdb51_org")  # ours, the official archive's
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
        return best  # 0 none, 1 partial, 2 complete: our face ids
    return best - 1 if best > 0 else UNKNOWN  # 0 = cannot tell


def _read_pa_hmdb(folder: Path, classes: list[str]) -> dict[str, dict]:
    """PrivacyAttributes/<class>.json -> {video stem: {attribute: class id}}."""
    found: dict[str, dict[str, int]] = {}
    if not folder.is_dir():
        return found
    names = {"face": "face", "gender": "gender", "skin_color": "skin_tone", "clothing": "clothing"}
    for path in sorted(folder.glob("*.json")):
        label_index(classes, path.stem, str(path))
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
                for theirs, ours in names.items()
                if theirs in attrs
            }
    return found


def _split_class(listing: Path) -> str:
    """The class a split list is named for: <class>_test_split1.txt."""
    match = _HMDB_SPLIT.match(listing.name)
    if match is None:  # the listing glob's '*' also matches an empty class name
        raise DataError(f"{listing}: expected <class>_test_split1.txt")
    return match["cls"]


def load_hmdb51(ctx: LoaderContext) -> list[dict]:
    """testTrainMulti_7030_splits/<class>_test_split1.txt ('<name> 1|2|0'); videos at
    hmdb51/<class>/<name> (or the official archive's hmdb51_org/<class>/<name>)."""
    split_dir = first_dir(ctx.set_dir, ("testTrainMulti_7030_splits",), "HMDB51 split list")
    files = sorted(split_dir.glob("*_test_split1.txt"))
    if not files:
        raise DataError(f"{split_dir}: no <class>_test_split1.txt files ({folder_contents(split_dir)})")
    videos = next((ctx.set_dir / d for d in HMDB_VIDEO_DIRS if (ctx.set_dir / d).is_dir()), None)
    base = videos or ctx.set_dir / HMDB_VIDEO_DIRS[0]
    classes = ctx.classes or sorted(_split_class(f) for f in files)
    attributes = _read_pa_hmdb(ctx.set_dir / "PrivacyAttributes", classes)
    rows = []
    for listing in files:
        label = _split_class(listing)
        label_id = label_index(classes, label, str(listing))
        for number, line in read_lines(listing):
            where = f"{listing}:{number}"
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{where}: expected '<video> 0|1|2', got {line!r}")
            if parts[1] == "0":
                continue  # not used in split 1
            file = ctx.inside(f"{label}/{parts[0]}", base, listing, number)
            split = "train" if parts[1] == "1" else "test"
            attrs = attributes.get(Path(parts[0]).stem, {})
            rows.append(manifest_row(ctx, file, Path(parts[0]).stem, split, label, label_id, **attrs))
    if videos is None:
        first_dir(ctx.set_dir, HMDB_VIDEO_DIRS, "HMDB51 video")  # raises, naming what is there
    return rows
