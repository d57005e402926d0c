"""THUMOS14: untrimmed videos with temporal action annotations."""

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
    parse_float,
    read_lines,
)
from latentanon.errors import DataError

_THUMOS_NOTE = re.compile(r"^(?P<cls>.+)_(?P<tag>val|test)\.txt$")


# Per split: (our folder, tag, annotation folders, video folders); ours first, then the official archives'.
THUMOS_SPLITS = (
    (
        "validation",
        "val",
        ("annotation/validation", "TH14_Temporal_annotations_validation/annotation"),
        ("videos/validation", "validation", "TH14_validation_set_mp4"),
    ),
    (
        "test",
        "test",
        (
            "annotation/test",
            "TH14_Temporal_annotations_test/annotation",
            "TH14_Temporal_Annotations_Test/annotations/annotation",
            "TH14_Temporal_Annotations_Test/annotation",
        ),
        ("videos/test", "test", "TH14_test_set_mp4"),
    ),
)


def load_thumos14(ctx: LoaderContext) -> list[dict]:
    """annotation/{validation,test}/<Class>_{val,test}.txt ('<video> <start_s> <end_s>') and videos
    at videos/{validation,test}/<video>.mp4, or the official archives' folders
    TH14_Temporal_annotations_{validation,test}/annotation/ and validation/, test/. Only annotated
    videos are listed; a split without an annotation folder is left out."""
    segments: dict[tuple[str, Path], list] = {}
    seen_classes = set()
    tried: list[str] = []
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
                continue  # THUMOS marks unclear spans; not a class
            if ctx.classes is not None:
                label_index(ctx.classes, label, str(path))
            seen_classes.add(label)
            for number, line in read_lines(path):
                where = f"{path}:{number}"
                parts = line.split()
                if len(parts) != 3:
                    raise DataError(f"{where}: expected '<video> <start_s> <end_s>', got {line!r}")
                start, end = parse_float(parts[1], where, "start"), parse_float(parts[2], where, "end")
                if start < 0 or end <= start:
                    raise DataError(f"{where}: interval [{start}, {end}] is empty or negative")
                file = ctx.inside(f"{parts[0]}.mp4", base, path, number)
                segments.setdefault((folder, file), []).append([start, end, label])
        if videos is None and any(key[0] == folder for key in segments):
            first_dir(ctx.set_dir, video_dirs, f"THUMOS14 {folder} video")  # raises, naming what is there
    if not segments:
        raise DataError(
            f"{ctx.set_dir}: no annotated THUMOS14 videos (looked for annotation folders "
            f"{', '.join(d + '/' for d in tried)}; {folder_contents(ctx.set_dir)})"
        )
    rows = []
    for (folder, file), spans in sorted(segments.items()):
        split = "test" if folder == "test" else "train"
        spans = sorted(spans, key=lambda s: (s[0], s[1]))
        rows.append(manifest_row(ctx, file, file.stem, split, "", UNKNOWN, segments=json.dumps(spans)))
    return rows
