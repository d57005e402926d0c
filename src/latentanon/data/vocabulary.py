"""What labels may be in each set: classes.json, or for real data the loaders' own classes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from latentanon._files import read_json
from latentanon.errors import DataError


@dataclass(frozen=True)
class Vocabulary:
    """What labels may be, from classes.json: each set's class list and each attribute's size."""

    classes_by_set: dict[str, tuple[str, ...]]
    default_classes: tuple[str, ...] = ()
    attribute_sizes: dict[str, int] = field(default_factory=dict)
    # False for real data (no classes.json): classes come from the datasets' own files, frame
    # size and fps vary by dataset (checked positive, not equal to data.*), and attributes the
    # dataset does not label may stay unknown.
    from_classes_file: bool = True

    def classes(self, set_name: str) -> tuple[str, ...]:
        return self.classes_by_set.get(set_name, self.default_classes)


def _class_list(value, path: Path, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        raise DataError(f"{path}: {where} must be a list of class names")
    if len(set(value)) != len(value):
        raise DataError(f"{path}: {where} has duplicate class names")
    return tuple(value)


def vocabulary_from_manifests(manifests: dict[str, pd.DataFrame]) -> Vocabulary:
    """Real data without classes.json: each set's classes as its loader read them from the
    dataset's own files (label_id order), plus the labels of its annotation segments."""
    by_set = {}
    for name, df in manifests.items():
        names: dict[int, str] = {}
        if {"label", "label_id"} <= set(df.columns):
            for label, label_id in zip(df["label"].tolist(), df["label_id"].tolist()):
                if isinstance(label, str) and label and pd.notna(label_id) and int(label_id) >= 0:
                    names.setdefault(int(label_id), label)
        # ids no listed video uses keep their place; the placeholder matches no real label
        classes = [names.get(i, f"<unused class {i}>") for i in range(max(names, default=-1) + 1)]
        if "segments" in df.columns:
            for cell in df["segments"].tolist():
                try:
                    spans = json.loads(cell) if isinstance(cell, str) and cell else []
                except json.JSONDecodeError:
                    continue  # the segment checks report it
                for span in spans if isinstance(spans, list) else []:
                    if isinstance(span, list) and len(span) > 2 and str(span[2]) not in classes:
                        classes.append(str(span[2]))
        by_set[name] = tuple(classes)
    return Vocabulary(classes_by_set=by_set, from_classes_file=False)


def load_vocabulary(root: Path) -> Vocabulary:
    """root/classes.json: {"sets": {set: [class, ...]}, "actions": [...], "attributes": {name:
    [value names]}} (a plain list of classes is accepted too, for every set)."""
    path = Path(root) / "classes.json"
    if not path.exists():
        raise DataError(f"{path}: classes.json not found in the data root (run generate first)")
    payload = read_json(path, DataError)
    if isinstance(payload, list):
        return Vocabulary(classes_by_set={}, default_classes=_class_list(payload, path, "the class list"))
    if not isinstance(payload, dict):
        raise DataError(f"{path}: expected an object or a list of class names")
    sets = payload.get("sets", {})
    if not isinstance(sets, dict):
        raise DataError(f"{path}: 'sets' must map set names to class lists")
    by_set = {name: _class_list(value, path, f"sets.{name}") for name, value in sets.items()}
    default = _class_list(payload["actions"], path, "actions") if "actions" in payload else ()
    sizes = {}
    attributes = payload.get("attributes", {})
    if not isinstance(attributes, dict):
        raise DataError(f"{path}: 'attributes' must map attribute names to value names")
    for name, values in attributes.items():
        count = len(values) if isinstance(values, list) else values
        if not isinstance(count, int) or count < 1:
            raise DataError(f"{path}: attribute {name!r} needs a list of value names or a positive count")
        sizes[name] = count
    return Vocabulary(classes_by_set=by_set, default_classes=default, attribute_sizes=sizes)
