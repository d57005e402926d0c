"""NTU RGB+D style subject-annotated videos for the bias protocol."""

from __future__ import annotations

import re

from latentanon.data import layouts
from latentanon.data.loaders.common import (
    LoaderContext,
    manifest_row,
    parse_int,
    read_lines,
)
from latentanon.errors import DataError

_NTU_NAME = re.compile(r"^S(?P<s>\d{3})C(?P<c>\d{3})P(?P<p>\d{3})R(?P<r>\d{3})A(?P<a>\d{3})_rgb\.\w+$")


def load_ntu(ctx: LoaderContext) -> list[dict]:
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
        lines = read_lines(subjects_file)
        if not lines or lines[0][1].replace(" ", "") != "subject,gender":
            raise DataError(f"{subjects_file}: expected header 'subject,gender'")
        for number, line in lines[1:]:
            where = f"{subjects_file}:{number}"
            parts = line.split(",")
            if len(parts) != 2:
                raise DataError(f"{where}: expected '<subject>,<gender id>', got {line!r}")
            genders[parse_int(parts[0], where, "subject")] = parse_int(parts[1], where, "gender")
    train_file = ctx.set_dir / layouts.CROSS_SUBJECT_FILE
    if train_file.exists():
        train_subjects = {parse_int(line, f"{train_file}:{n}", "subject") for n, line in read_lines(train_file)}
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
        rows.append(manifest_row(ctx, path, path.stem, split, label, action - 1, subject, subject=subject, **extra))
    return rows
