"""Atomic writes: the whole file or the previous one, never a torn or temporary file."""
from __future__ import annotations

import json

import numpy as np

from latentanon._files import write_json_atomic, write_text_atomic


def test_json_is_sorted_indented_and_accepts_numpy_scalars(tmp_path):
    path = write_json_atomic(tmp_path / "deep" / "out.json", {"b": np.float32(0.5), "a": np.int64(3), "c": tmp_path})
    text = path.read_text()
    assert json.loads(text) == {"a": 3, "b": 0.5, "c": str(tmp_path)}
    assert text.startswith('{\n  "a": 3') and text.endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_text_replaces_the_previous_file_whole(tmp_path):
    path = tmp_path / "notes.md"
    write_text_atomic(path, "first")
    write_text_atomic(path, "second")
    assert path.read_text() == "second" and [p.name for p in tmp_path.iterdir()] == ["notes.md"]
