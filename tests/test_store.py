"""The sharded feature store on a local directory: round trips, checksums, completeness, index, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from latentanon.errors import StoreError
from latentanon.features.featureset import FeatureSet
from latentanon.features.store import (
    FeatureStore,
    list_feature_sets,
    load_feature_set,
    write_feature_set,
)


def make_set(name: str = "untrimmed", n: int = 7, dim: int = 6, seed: int = 0) -> FeatureSet:
    """Manifest-like records (segments, nullable ints, missing strings) and ragged features."""
    rng = np.random.default_rng(seed)
    records = pd.DataFrame(
        {
            "video_id": [f"{name}_{i:03d}" for i in range(n)],
            "path": [f"videos/{name}_{i:03d}.mp4" for i in range(n)],
            "split": (["train", "val", "test"] * n)[:n],
            "label": ["walk" if i % 2 else "" for i in range(n)],
            "label_id": np.arange(n, dtype=np.int64),
            "fps": np.full(n, 16.0),
            "gender": pd.array([i % 2 if i != 3 else None for i in range(n)], dtype="Int64"),
            "clothing": [None if i == 1 else f"c{i}" for i in range(n)],
            "segments": [[[0.5 * i, 0.5 * i + 1.25, "walk"], [3.0, 4.0, "run"]] if i % 3 else [] for i in range(n)],
            "anomaly": [bool(i % 2) for i in range(n)],
        }
    )
    arrays = {
        "clips": [rng.normal(size=(5, dim)).astype(np.float32) for _ in range(n)],
        "static": [rng.normal(size=(1 + i % 3, dim)).astype(np.float32) for i in range(n)],
        "snippets": [rng.normal(size=(2 + 3 * i, dim)).astype(np.float32) for i in range(n)],
    }
    return FeatureSet(name=name, records=records, arrays=arrays, meta={"manifest_hash": f"hash-{name}"})


def assert_same(a: FeatureSet, b: FeatureSet) -> None:
    assert a.name == b.name
    pd.testing.assert_frame_equal(a.records, b.records)
    assert sorted(a.arrays) == sorted(b.arrays)
    for kind in a.arrays:
        assert len(a.arrays[kind]) == len(b.arrays[kind])
        for x, y in zip(a.arrays[kind], b.arrays[kind]):
            assert y.dtype == np.float32
            np.testing.assert_array_equal(np.asarray(x, dtype=np.float32), y)


def test_round_trip_ragged_kinds_and_records(tmp_path):
    fs = make_set(n=7)
    index = write_feature_set(tmp_path, fs, videos_per_shard=3)
    back = load_feature_set(tmp_path, "untrimmed")
    assert_same(fs, back)
    assert back.records["segments"][1] == [[0.5, 1.75, "walk"], [3.0, 4.0, "run"]]
    assert back.records["gender"].dtype == "Int64" and pd.isna(back.records["gender"][3])
    assert back.meta["manifest_hash"] == "hash-untrimmed"
    entry = index["sets"]["untrimmed"]
    assert entry["shards"] == [0, 1, 2]
    assert entry["videos"] == 7
    assert entry["kinds"] == ["clips", "snippets", "static"]
    assert entry["dim"] == 6
    assert entry["rows"]["snippets"] == sum(2 + 3 * i for i in range(7))
    assert set(entry["checksums"]) == {"shard-00000", "shard-00001", "shard-00002"}
    assert all(len(f["sha256"]) == 64 for files in entry["checksums"].values() for f in files.values())


def test_several_sets_index_meta_and_listing(tmp_path):
    images = FeatureSet(
        name="privacy_images",
        records=pd.DataFrame({"video_id": ["img0", "img1"], "split": ["train", "test"], "skin_tone": [0, 2]}),
        arrays={"static": [np.ones((1, 4), np.float32), np.zeros((1, 4), np.float32)]},
        meta={"kind": "images"},
    )
    write_feature_set(tmp_path, make_set("actions", n=4, dim=4))
    write_feature_set(tmp_path, images)
    store = FeatureStore(tmp_path)
    index = store.write_index({"encoder": {"name": "builtin", "sha256": "abc"}, "params_hash": "p1"})
    assert json.loads((tmp_path / "index.json").read_text()) == index
    assert list_feature_sets(tmp_path) == ["actions", "privacy_images"]
    back = load_feature_set(str(tmp_path), "privacy_images")
    assert_same(images, back)
    # index meta (encoder identity) and the set's own meta both reach the loaded set
    assert back.meta == {"encoder": {"name": "builtin", "sha256": "abc"}, "params_hash": "p1", "kind": "images"}
    # writing another set keeps the store-wide meta
    write_feature_set(tmp_path, make_set("anomaly", n=2, dim=4))
    assert store.read_index()["meta"]["params_hash"] == "p1"
    assert list_feature_sets(tmp_path) == ["actions", "anomaly", "privacy_images"]


def test_empty_set_round_trips(tmp_path):
    empty = make_set(n=3).subset([])
    write_feature_set(tmp_path, empty)
    back = load_feature_set(tmp_path, "untrimmed")
    assert len(back) == 0
    assert list(back.records.columns) == list(empty.records.columns)
    assert back.records["video_id"].dtype == empty.records["video_id"].dtype
    assert sorted(back.arrays) == ["clips", "snippets", "static"]


def test_identical_rewrite_writes_nothing_and_smaller_rewrite_drops_stale_shards(tmp_path):
    fs = make_set(n=7)
    write_feature_set(tmp_path, fs, videos_per_shard=2)
    shard0 = tmp_path / "untrimmed" / "shard-00000.safetensors"
    stamp = shard0.stat().st_mtime_ns
    write_feature_set(tmp_path, fs, videos_per_shard=2)
    assert shard0.stat().st_mtime_ns == stamp
    smaller = fs.subset(np.arange(3))
    index = write_feature_set(tmp_path, smaller, videos_per_shard=2)
    assert index["sets"]["untrimmed"]["shards"] == [0, 1]
    assert not (tmp_path / "untrimmed" / "shard-00003.safetensors").exists()
    assert_same(smaller, load_feature_set(tmp_path, "untrimmed"))


def test_shard_api_and_meta(tmp_path):
    store = FeatureStore(tmp_path / "store")
    fs = make_set(n=4)
    assert not store.has_shard("untrimmed", 0)
    checksums = store.write_shard("untrimmed", 0, fs.subset([0, 1]))
    store.write_shard("untrimmed", 1, fs.subset([2, 3]))
    assert store.has_shard("untrimmed", 0) and store.has_shard("untrimmed", 1)
    assert checksums["videos"] == 2 and checksums["dim"] == 6
    assert_same(fs.subset([2, 3]), store.read_shard("untrimmed", 1))
    assert store.complete_shards("untrimmed") == [0, 1]
    assert store.set_names() == ["untrimmed"]
    info = store.shard_info("untrimmed", 1)
    assert info["videos"] == 2 and info["meta"] == {"manifest_hash": "hash-untrimmed"}
    assert info["kinds"]["snippets"] == {"rows": (2 + 3 * 2) + (2 + 3 * 3), "dim": 6}
    assert store.shard_info("untrimmed", 2) is None
    store.delete_shard("untrimmed", 1)
    assert not store.has_shard("untrimmed", 1)
    assert not (tmp_path / "store" / "untrimmed" / "shard-00001.safetensors").exists()


@pytest.mark.parametrize("target", ["safetensors", "records.json"])
def test_corruption_is_detected_naming_the_shard(tmp_path, target):
    write_feature_set(tmp_path, make_set(n=6), videos_per_shard=3)
    path = tmp_path / "untrimmed" / f"shard-00001.{target}"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=rf"shard-00001\.{target}.*checksum mismatch in shard 1"):
        load_feature_set(tmp_path, "untrimmed")
    # the intact shard still reads
    assert len(FeatureStore(tmp_path).read_shard("untrimmed", 0)) == 3


def test_missing_shard_file_is_reported(tmp_path):
    write_feature_set(tmp_path, make_set(n=4), videos_per_shard=2)
    (tmp_path / "untrimmed" / "shard-00001.records.json").unlink()
    assert not FeatureStore(tmp_path).has_shard("untrimmed", 1)
    with pytest.raises(StoreError, match="shard 1 of set 'untrimmed' is missing"):
        load_feature_set(tmp_path, "untrimmed")


def test_interrupted_shard_write_is_not_counted_and_blocks_the_index(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path)
    fs = make_set(n=4)
    store.write_shard("untrimmed", 0, fs.subset([0, 1]))
    original = type(store.backend).write_bytes

    def die_before_checksums(backend, rel, data):
        if rel.endswith("checksums.json"):
            raise KeyboardInterrupt("killed")
        original(backend, rel, data)

    monkeypatch.setattr(type(store.backend), "write_bytes", die_before_checksums)
    with pytest.raises(KeyboardInterrupt):
        store.write_shard("untrimmed", 1, fs.subset([2, 3]))
    monkeypatch.setattr(type(store.backend), "write_bytes", original)
    assert (tmp_path / "untrimmed" / "shard-00001.safetensors").exists()
    assert not store.has_shard("untrimmed", 1)
    assert store.complete_shards("untrimmed") == [0]
    with pytest.raises(StoreError, match=r"shard\(s\) \[1\] of set 'untrimmed' are incomplete"):
        store.write_index({})
    # resuming finishes the shard and the index covers everything
    store.write_shard("untrimmed", 1, fs.subset([2, 3]))
    assert store.write_index({})["sets"]["untrimmed"]["videos"] == 4


def test_rewritten_shard_after_index_is_refused(tmp_path):
    write_feature_set(tmp_path, make_set(n=4), videos_per_shard=2)
    FeatureStore(tmp_path).write_shard("untrimmed", 1, make_set(n=4, seed=9).subset([2, 3]))
    with pytest.raises(StoreError, match="changed since the index was written"):
        load_feature_set(tmp_path, "untrimmed")


def test_index_refuses_gaps(tmp_path):
    store = FeatureStore(tmp_path)
    fs = make_set(n=6)
    store.write_shard("untrimmed", 0, fs.subset([0, 1]))
    store.write_shard("untrimmed", 2, fs.subset([4, 5]))
    with pytest.raises(StoreError, match=r"gaps: missing shard\(s\) \[1\] \(present: \[0, 2\]\)"):
        store.write_index({})


def test_temporary_files_are_ignored(tmp_path):
    write_feature_set(tmp_path, make_set(n=2))
    (tmp_path / "untrimmed" / ".shard-00001.safetensors.tmp-1-abc").write_bytes(b"partial")
    assert FeatureStore(tmp_path).write_index({})["sets"]["untrimmed"]["shards"] == [0]


def test_errors_name_the_store(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(StoreError, match=f"{missing}: no feature store here"):
        load_feature_set(missing, "actions")
    with pytest.raises(StoreError, match="no feature store here"):
        list_feature_sets(missing)
    write_feature_set(tmp_path / "s", make_set("actions", n=2))
    with pytest.raises(StoreError, match=r"no feature set 'anomaly' \(has: \['actions'\]\)"):
        load_feature_set(tmp_path / "s", "anomaly")
    (tmp_path / "s" / "index.json").unlink()
    with pytest.raises(StoreError, match="index.json: missing; the store was never finalized"):
        load_feature_set(tmp_path / "s", "actions")
    (tmp_path / "s" / "index.json").write_text("{not json")
    with pytest.raises(StoreError, match="not a feature store index"):
        list_feature_sets(tmp_path / "s")


def test_bad_input_is_refused(tmp_path):
    store = FeatureStore(tmp_path)
    fs = make_set(n=2)
    with pytest.raises(StoreError, match="invalid feature set name '../x'"):
        store.write_shard("../x", 0, fs)
    with pytest.raises(StoreError, match="invalid shard number -1"):
        store.write_shard("untrimmed", -1, fs)
    flat = FeatureSet("flat", fs.records, {"clips": [np.zeros(4, np.float32), np.zeros(4, np.float32)]})
    with pytest.raises(StoreError, match=r"'clips' features of record 0 have shape \(4,\)"):
        store.write_shard("flat", 0, flat)
    mixed = FeatureSet("mixed", fs.records, {"clips": [np.zeros((1, 4)), np.zeros((1, 5))]})
    with pytest.raises(StoreError, match=r"mix widths \[4, 5\]"):
        store.write_shard("mixed", 0, mixed)
    with pytest.raises(StoreError, match="videos_per_shard must be at least 1"):
        write_feature_set(tmp_path, fs, videos_per_shard=0)
    with pytest.raises(StoreError, match="unsupported store location"):
        FeatureStore("gs://bucket/features")
    with pytest.raises(StoreError, match="no feature shards to index"):
        FeatureStore(tmp_path / "empty").write_index({})
