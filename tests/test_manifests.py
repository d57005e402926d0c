"""Manifest CSVs: the contract's types survive a write/read round trip; bad files get clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from latentanon.data.manifests import list_manifests, manifest_path, read_manifest, write_manifest
from latentanon.errors import DataError


def _manifest() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": ["v_walk_g01_c01", "video_test_0000001", "007"],
            "path": ["a/1.mp4", "b/2.mp4", "c/3.mp4"],
            "set": ["untrimmed"] * 3,
            "split": ["train", "val", "test"],
            "label": ["walk", "", "run"],
            "label_id": [0, -1, 1],
            "identity": [7, 12, -1],
            "frames": [48, 256, 48],
            "fps": [16.0, 16.0, 12.5],
            "width": [32, 32, 32],
            "height": [32, 32, 32],
            "checksum": ["ab" * 32, "cd" * 32, "ef" * 32],
            "skin_tone": [0, 3, 1],
            "segments": [[[0.5, 1.25, "walk"]], json.dumps([[1.0, 2.0, "run"], [3.0, 4.5, "walk"]]), []],
            "anomaly": [0, 1, 0],
            "subject": [1, 2, 3],
            "note": ["x", "y", "z"],
        }
    )


def test_round_trip_restores_types_and_parses_segments(tmp_path):
    path = write_manifest(_manifest(), tmp_path, "untrimmed")
    assert path == manifest_path(tmp_path, "untrimmed") and path.exists()
    df = read_manifest(tmp_path, "untrimmed")
    assert list(df.columns[:12]) == [
        "video_id",
        "path",
        "set",
        "split",
        "label",
        "label_id",
        "identity",
        "frames",
        "fps",
        "width",
        "height",
        "checksum",
    ]
    # text ids stay text, leading zeros and empty labels included; -1 marks an unknown id
    assert df["identity"].tolist() == [7, 12, -1]
    assert df["video_id"].iat[2] == "007"
    assert df["label"].tolist() == ["walk", "", "run"]
    for column in ("label_id", "identity", "frames", "width", "height", "skin_tone", "anomaly", "subject"):
        assert df[column].dtype == "int64", column
    assert df["fps"].dtype == "float64" and df["fps"].iat[2] == 12.5
    assert df["segments"].tolist() == [[[0.5, 1.25, "walk"]], [[1.0, 2.0, "run"], [3.0, 4.5, "walk"]], []]
    assert df["note"].tolist() == ["x", "y", "z"]
    assert list_manifests(tmp_path) == ["untrimmed"]


def test_write_is_atomic_and_replaces(tmp_path):
    write_manifest(_manifest(), tmp_path, "actions")
    smaller = _manifest().iloc[:1]
    write_manifest(smaller, tmp_path, "actions")
    assert len(read_manifest(tmp_path, "actions")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["actions.csv"]


def test_missing_manifest_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"privacy_videos\.csv.*not found"):
        read_manifest(tmp_path, "privacy_videos")


def test_missing_column_is_reported(tmp_path):
    _manifest().drop(columns=["checksum"]).to_csv(tmp_path / "actions.csv", index=False)
    with pytest.raises(DataError, match=r"actions\.csv.*lacks required columns \['checksum'\]"):
        read_manifest(tmp_path, "actions")


def test_bad_integer_names_column_and_row(tmp_path):
    df = _manifest().astype({"frames": object})
    df.loc[1, "frames"] = "many"
    df.to_csv(tmp_path / "actions.csv", index=False)
    with pytest.raises(DataError, match=r"'frames' needs int values; bad rows: video_test_0000001"):
        read_manifest(tmp_path, "actions")


def test_fractional_integer_is_rejected(tmp_path):
    df = _manifest().astype({"label_id": float})
    df.loc[0, "label_id"] = 0.5
    df.to_csv(tmp_path / "actions.csv", index=False)
    with pytest.raises(DataError, match=r"'label_id' needs int values"):
        read_manifest(tmp_path, "actions")


def test_bad_segments_json_is_reported(tmp_path):
    df = _manifest()
    df["segments"] = ['[[0, 1, "walk"]]', "[[0, 1,", "[]"]
    df.to_csv(tmp_path / "untrimmed.csv", index=False)
    with pytest.raises(DataError, match=r"'segments' of row 1 \(video_test_0000001\) is not valid JSON"):
        read_manifest(tmp_path, "untrimmed")


def test_segments_must_be_a_list(tmp_path):
    df = _manifest()
    df["segments"] = ["[]", '{"a": 1}', "[]"]
    df.to_csv(tmp_path / "untrimmed.csv", index=False)
    with pytest.raises(DataError, match="must be a JSON list"):
        read_manifest(tmp_path, "untrimmed")


def test_write_rejects_incomplete_or_bad_tables(tmp_path):
    with pytest.raises(DataError, match=r"missing required columns \['label'"):
        write_manifest(_manifest().drop(columns=["label", "label_id"]), tmp_path, "actions")
    bad = _manifest()
    bad["segments"] = ["not json", "[]", "[]"]
    with pytest.raises(DataError, match="row 0 'segments' is not JSON"):
        write_manifest(bad, tmp_path, "actions")
    assert not list(tmp_path.iterdir())


def test_empty_csv_is_a_data_error(tmp_path):
    (tmp_path / "actions.csv").write_text("")
    with pytest.raises(DataError, match="cannot parse manifest CSV"):
        read_manifest(tmp_path, "actions")
