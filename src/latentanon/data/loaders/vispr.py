"""VISPR-style privacy images with attribute labels."""

from __future__ import annotations

import json
import re

from latentanon.data.layouts import UNKNOWN
from latentanon.data.loaders.common import (
    LoaderContext,
    manifest_row,
)
from latentanon.errors import DataError

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


def load_vispr(ctx: LoaderContext) -> list[dict]:
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
            rows.append(
                manifest_row(ctx, file, path.stem, split, "", UNKNOWN, **_vispr_attributes(note["labels"], str(path)))
            )
    if not rows:
        raise DataError(f"{ctx.set_dir / 'annotations'}: no {'/'.join(VISPR_SPLITS)} annotation files")
    return rows
