"""Atomic writes: the whole file or the previous one, never a torn or temporary file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

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


def test_atomic_path_keeps_the_old_file_and_no_temp_when_the_writer_fails(tmp_path):
    from latentanon._files import atomic_path

    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_atomic_path_syncs_unless_the_file_is_regenerable(tmp_path, monkeypatch):
    from latentanon import _files

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(_files.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    with _files.atomic_path(tmp_path / "a.png", suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".a.png.tmp-")
        tmp.write_bytes(b"png")
    assert len(synced) == 1
    with _files.atomic_path(tmp_path / "b.mp4", durable=False) as tmp:
        tmp.write_bytes(b"mp4")
    assert len(synced) == 1
    assert (tmp_path / "a.png").read_bytes() == b"png" and (tmp_path / "b.mp4").read_bytes() == b"mp4"


def test_read_json_names_the_file_and_the_problem(tmp_path):
    from latentanon._files import read_json
    from latentanon.errors import DataError

    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    assert read_json(good, DataError) == {"a": 1}
    with pytest.raises(DataError, match=r"missing\.json: not found \(run generate\)"):
        read_json(tmp_path / "missing.json", DataError, missing="run generate")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON \(.*\); write it again"):
        read_json(bad, DataError, invalid="write it again")


def test_figures_and_percentages_follow_one_rule():
    from latentanon.formatting import figure, percent

    assert figure(0.30549) == "0.305" and figure(2, digits=1) == "2.0"
    assert percent(0.035) == "+3.5%" and percent(-0.0123, digits=2) == "-1.23%"
    for missing in (None, float("nan"), float("inf"), True, "0.3"):
        assert figure(missing) == "n/a" and percent(missing) == "n/a"
