"""UCF101: trimmed action clips (class folders, official split lists)."""

from __future__ import annotations

import re
from pathlib import Path

from latentanon.data.loaders.common import (
    LoaderContext,
    first_dir,
    label_index,
    manifest_row,
    parse_int,
    read_lines,
    require_file,
)
from latentanon.errors import DataError

UCF101_VIDEO_DIRS = ("UCF101", "UCF-101")  # ours, the official archive's
_UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)\.\w+$")


def load_ucf101(ctx: LoaderContext) -> list[dict]:
    """ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt; videos at UCF101/<Class>/v_<Class>_gGG_cCC.*
    (the official archive's UCF-101/ folder name works too).

    The group gGG is the actor identity (as in real UCF101)."""
    lists = first_dir(ctx.set_dir, ("ucfTrainTestlist",), "UCF101 split list")
    # the annotation lists are checked first; a missing video folder is reported after them
    videos = next((ctx.set_dir / d for d in UCF101_VIDEO_DIRS if (ctx.set_dir / d).is_dir()), None)
    base = videos or ctx.set_dir / UCF101_VIDEO_DIRS[0]
    class_file = require_file(lists / "classInd.txt")
    classes: list[str] = []
    for number, line in read_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or parse_int(parts[0], f"{class_file}:{number}", "class index") != len(classes) + 1:
            raise DataError(f"{class_file}:{number}: expected '<index> <ClassName>' numbered from 1, got {line!r}")
        classes.append(parts[1])
    rows = []
    for name, split in (("trainlist01.txt", "train"), ("testlist01.txt", "test")):
        listing = require_file(lists / name)
        for number, line in read_lines(listing):
            where = f"{listing}:{number}"
            parts = line.split()
            entry = parts[0]
            label = entry.split("/")[0] if "/" in entry else ""
            label_id = label_index(classes, label, where)
            if len(parts) > 1 and parse_int(parts[1], where, "class index") != label_id + 1:
                raise DataError(f"{where}: class index {parts[1]} does not match {label!r} in {class_file.name}")
            match = _UCF_NAME.match(Path(entry).name)
            if not match or match["cls"] != label:
                raise DataError(f"{where}: {entry!r} is not named <Class>/v_<Class>_gGG_cCC.<ext>")
            file = ctx.inside(entry, base, listing, number)
            rows.append(manifest_row(ctx, file, Path(entry).stem, split, label, label_id, int(match["group"])))
    if videos is None:
        first_dir(ctx.set_dir, UCF101_VIDEO_DIRS, "UCF101 video")  # raises, naming what is there
    return rows
