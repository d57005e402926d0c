"""Kinetics-400: the pretraining corpus (class folders, a train/val list or folder per split)."""

from __future__ import annotations

import csv

from latentanon.data.loaders.common import (
    LoaderContext,
    label_index,
    manifest_row,
    parse_int,
)
from latentanon.errors import DataError


def load_kinetics(ctx: LoaderContext) -> list[dict]:
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
                start = parse_int(row["time_start"], where, "time_start")
                end = parse_int(row["time_end"], where, "time_end")
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
        rows.append(manifest_row(ctx, file, stem, split, label, label_index(classes, label, f"{path}:{number}")))
    return rows
