"""What a published store carries (the release schema), its lifecycle (unapproved before the first
write, an exact mirror of its source) and the store's own checks on names it is told to open."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from latentanon.errors import DataError, ModelError, StoreError
from latentanon.features import release
from latentanon.features.featureset import FeatureSet
from latentanon.features.store import FeatureStore, load_feature_set, write_feature_set
from latentanon.methods.apply import anonymize_store
from latentanon.methods.registry import METHODS, create_method
from test_methods import TINY, concrete
from test_s3 import BUCKET, s3_server  # noqa: F401  (the moto server fixture)
from test_tuning import make_feature_sets

ENCODER = "builtin-test-encoder@abc123"
PRIVATE_OR_LINKING = {"skin_tone", "gender", "clothing", "face", "identity", "subject", "path", "checksum"}


def source_sets(videos: int = 3) -> dict[str, FeatureSet]:
    sets = make_feature_sets(dim=16, per_split={"train": videos, "val": 2, "test": 2})
    bias = sets["actions"].subset(np.arange(len(sets["actions"])))
    bias.name = "bias"
    bias.records["subject"] = [f"S{i % 4:03d}" for i in range(len(bias))]
    bias.records["user_note"] = "filmed at home"  # a column of a user's own manifest
    sets["bias"] = bias
    return sets


def write_source(uri: str, sets: dict[str, FeatureSet], videos_per_shard: int = 3) -> None:
    for fs in sets.values():
        write_feature_set(uri, fs, videos_per_shard=videos_per_shard)
    FeatureStore(uri).write_index({"encoder": {"identity": ENCODER, "dim": 16}, "extract": {"device": "cpu"}})


@pytest.fixture(scope="module")
def fitted_dirs(tmp_path_factory):
    """Every registered method fitted on the tiny sets and saved: name -> method folder."""
    root = tmp_path_factory.mktemp("methods")
    sets = source_sets()
    return {base: create_method(concrete(base), TINY).fit(sets, seed=0).save(root / base) for base in METHODS}


def assert_release(
    dst: str, src: str, sets: dict[str, FeatureSet], summary: dict, method_dir, load: bool = True
) -> None:
    store, mappings = FeatureStore(dst), release.ReleaseIds(src)
    index = store.read_index()
    assert set(index["sets"]) == set(sets)
    for name, fs in sets.items():
        source_ids = set(fs.records["video_id"])
        for shard in index["sets"][name]["shards"]:
            records = json.loads(store.backend.read_bytes(f"{name}/shard-{shard:05d}.records.json"))
            assert set(records["columns"]) <= set(release.RELEASE_COLUMNS), (name, records["columns"])
            assert not PRIVATE_OR_LINKING & set(records["columns"])
            ids = records["values"]["video_id"]
            assert not source_ids & set(ids)
            assert not any(s in i for i in ids for s in source_ids), "an opaque id never embeds the source id"
            mapping = mappings.read(summary["release_id"], name, shard)
            assert set(mapping["ids"]) == set(ids) and set(mapping["ids"].values()) <= source_ids
        assert set(index["sets"][name]["meta"]) <= set(release.RELEASE_META_KEYS)
        if load:  # what evaluation does: the released features beside the source's labels
            aligned = release.with_source_records(load_feature_set(dst, name), fs, dst)
            assert list(aligned.records["video_id"]) == list(fs.records["video_id"])
    assert set(index["meta"]) <= set(release.RELEASE_META_KEYS)
    assert index["meta"]["encoder"]["identity"] == ENCODER
    text = store.backend.read_bytes("index.json").decode()
    assert str(src) not in text and str(method_dir) not in text, "no source URI, no local directory"
    assert {"user_note", "subject", "identity", "path", "checksum"} <= set(summary["dropped_columns"]["bias"])
    assert not store.backend.list_files(release.RELEASE_IDS_SUFFIX.strip(".")), "no mapping inside the release"


@pytest.mark.parametrize("base", sorted(METHODS))
def test_every_published_column_is_on_the_allow_list_local(base, fitted_dirs, tmp_path):
    sets = source_sets()
    src, dst = str(tmp_path / "features"), str(tmp_path / "features_anon")
    write_source(src, sets)
    summary = anonymize_store(fitted_dirs[base], src, dst)
    assert_release(dst, src, sets, summary, fitted_dirs[base])
    assert (tmp_path / "features.release_ids").is_dir(), "the id mapping sits beside the source store"


def test_every_published_column_is_on_the_allow_list_s3(fitted_dirs, s3_server):  # noqa: F811
    """Every method through one moto server (starting one costs more than a method's release)."""
    sets = source_sets()
    src = f"s3://{BUCKET}/features"
    write_source(src, sets, videos_per_shard=16)  # one shard a set: requests are what costs here
    for base in sorted(METHODS):
        dst = f"s3://{BUCKET}/{base}/features_anon"
        summary = anonymize_store(fitted_dirs[base], src, dst)
        assert_release(dst, src, sets, summary, fitted_dirs[base], load=base == "identity")
        assert release.read_publish_status(dst)["status"] == release.UNAPPROVED


def test_a_run_killed_after_the_first_shard_leaves_the_store_unapproved(fitted_dirs, tmp_path, monkeypatch):
    sets = source_sets()
    src, dst = str(tmp_path / "features"), str(tmp_path / "features_anon")
    write_source(src, sets)
    anonymize_store(fitted_dirs["identity"], src, dst)
    release.write_publish_status(dst, release.APPROVED, ["an earlier approved release"])
    writes = []
    original = FeatureStore.write_shard

    def dies_after_one(self, *args, **kwargs):
        if writes:
            raise KeyboardInterrupt("killed")
        writes.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "write_shard", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        anonymize_store(fitted_dirs["rotation"], src, dst)  # another method: every shard is rewritten
    assert len(writes) == 1
    status = release.read_publish_status(dst)
    assert status["status"] == release.UNAPPROVED and status["share"] is False


def test_the_release_mirrors_its_source_and_keeps_only_current_shards(fitted_dirs, tmp_path):
    sets = source_sets()
    src, dst = str(tmp_path / "features"), str(tmp_path / "features_anon")
    write_source(src, sets)
    first = anonymize_store(fitted_dirs["identity"], src, dst)
    total = sum(first["shards"].values())
    assert first["shards_written"] == total and first["shards_kept"] == 0

    again = anonymize_store(fitted_dirs["identity"], src, dst)
    assert (again["shards_written"], again["shards_kept"], again["release_id"]) == (0, total, first["release_id"])

    # a set and a shard the source does not have are removed
    extra = FeatureSet(
        "leftover", pd.DataFrame({"video_id": ["x"], "split": ["test"]}), {"clips": [np.zeros((1, 16), np.float32)]}
    )
    FeatureStore(dst).write_shard("leftover", 0, extra)
    FeatureStore(dst).write_shard("actions", 40, extra)
    # one source shard changes: only that shard is redone, though the method is the same
    store = FeatureStore(src)
    changed = store.read_shard("anomaly", 0)
    changed.arrays["snippets"][0] = changed.arrays["snippets"][0] + 1.0
    store.write_shard("anomaly", 0, changed)
    store.write_index({"encoder": {"identity": ENCODER}})
    third = anonymize_store(fitted_dirs["identity"], src, dst)
    assert (third["shards_written"], third["shards_kept"]) == (1, total - 1)
    assert third["sets_removed"] == ["leftover"]
    assert FeatureStore(dst).set_names() == sorted(sets)
    assert 40 not in FeatureStore(dst).complete_shards("actions")
    np.testing.assert_allclose(
        load_feature_set(dst, "anomaly").arrays["snippets"][0], changed.arrays["snippets"][0], atol=1e-5
    )


def test_features_of_another_encoder_are_refused(fitted_dirs, tmp_path):
    src = str(tmp_path / "features")
    write_source(src, source_sets())
    with pytest.raises(ModelError, match="encoder builtin-test-encoder@abc123.*approved on features of encoder other"):
        anonymize_store(fitted_dirs["identity"], src, str(tmp_path / "out"), expected_encoder="other@1")
    assert not (tmp_path / "out").exists(), "nothing is written for features the method was not approved on"


def test_unknown_columns_are_dropped_and_reported():
    records = pd.DataFrame({"video_id": ["a"], "split": ["test"], "label_id": [2], "gender": [1], "note": ["x"]})
    out, dropped = release.release_records(records, ["vf00"])
    assert list(out.columns) == ["video_id", "split", "label_id"] and out["video_id"].tolist() == ["vf00"]
    assert dropped == ["gender", "note"]
    with pytest.raises(StoreError, match="outside the allow-list"):
        release.check_release_records(records, "test")
    a, b = release.opaque_ids(2)
    assert a != b and len(a) == 1 + 2 * release.ID_BYTES


def test_misaligned_release_is_refused():
    fs = source_sets()["actions"]
    shuffled = fs.subset(np.arange(len(fs))[::-1])
    with pytest.raises(StoreError, match="does not hold the source's videos in order"):
        release.with_source_records(shuffled, fs, "store")
    with pytest.raises(StoreError, match="holds"):
        release.with_source_records(fs.subset(np.arange(2)), fs, "store")


@pytest.mark.parametrize(
    "name",
    ["../actions/shard-00000.safetensors", "shard-00001.safetensors", "shard-00000.checksums.json", "/etc/passwd"],
)
def test_checksums_may_name_only_the_shards_own_files(tmp_path, name):
    store = FeatureStore(str(tmp_path / "s"))
    fs = source_sets()["actions"].subset(np.arange(2))
    store.write_shard("actions", 0, fs)
    path = tmp_path / "s" / "actions" / "shard-00000.checksums.json"
    manifest = json.loads(path.read_text())
    manifest["files"][name] = {"sha256": "0" * 64, "bytes": 1}
    path.write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"shard-00000\.checksums\.json: lists file .*not a data file of shard 0"):
        store.read_shard("actions", 0)
    with pytest.raises(StoreError, match="not a data file"):
        store.has_shard("actions", 0)


def test_extraction_refuses_manifest_paths_outside_the_data_root(tmp_path):
    from latentanon.data.config import DataConfig
    from latentanon.data.loaders.common import contained_path
    from latentanon.encoders.config import ExtractConfig
    from latentanon.encoders.extraction import extract_set

    class DescribedEncoder:  # extract_set reads only the description before it checks the paths
        frame_size = (32, 32)
        dim = 16

        def describe(self):
            return {"identity": "enc", "dim": 16}

    root = tmp_path / "data"
    root.mkdir()
    manifest = pd.DataFrame(
        {
            "video_id": ["a", "b"],
            "path": ["actions/a.mp4", "../outside.mp4"],
            "split": ["train", "test"],
            "frames": [16, 16],
        }
    )
    with pytest.raises(DataError, match=r"row 1: path '\.\./outside\.mp4' escapes the dataset root"):
        extract_set(
            DescribedEncoder(),
            FeatureStore(str(tmp_path / "f")),
            ExtractConfig(),
            DataConfig(),
            "actions",
            manifest,
            root,
            0,
            1,
        )
    assert contained_path(root, "actions/a.mp4", "m") == (root / "actions" / "a.mp4").resolve()
    with pytest.raises(DataError, match="escapes the dataset root"):
        contained_path(root, "/etc/passwd", "m")


def test_evaluation_reads_the_release_features_with_the_source_labels(fitted_dirs, tmp_path):
    from latentanon.evaluation.measure import align_release

    sets = source_sets()
    src, dst = str(tmp_path / "features"), str(tmp_path / "features_anon")
    write_source(src, sets)
    anonymize_store(fitted_dirs["rotation"], src, dst)
    raw = {name: load_feature_set(src, name) for name in sets}
    released = {name: load_feature_set(dst, name) for name in sets}
    aligned = align_release(raw, released, dst)
    for name in sets:
        pd.testing.assert_frame_equal(aligned[name].records, raw[name].records)  # private labels for the attacks
        for kind in released[name].arrays:
            for a, b in zip(aligned[name].kind(kind), released[name].kind(kind)):
                np.testing.assert_array_equal(a, b)  # the published features
    del released["bias"]
    with pytest.raises(StoreError, match="lacks feature set 'bias'"):
        align_release(raw, released, dst)
