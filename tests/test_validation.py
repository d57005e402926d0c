"""The validate stage on small hand-built benchmarks: real mp4 files, real GX suites."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latentanon.data.config import DataConfig, ValidateConfig
from latentanon.data.loaders import manifest_hash
from latentanon.data.manifests import read_manifest
from latentanon.data.validation import validate_manifests
from latentanon.data.video_io import write_image, write_video
from latentanon.data.vocabulary import load_vocabulary
from latentanon.errors import DataError, LatentanonError, ValidationFailed

CLASSES = ["walk", "run", "sit_down", "stand_up"]
ANOMALY_CLASSES = ["Normal", "Fighting"]
DATA_CFG = DataConfig(height=16, width=16, fps=8)
FRAMES = 4


def _write_clip(root: Path, rel: str, seed: int, frames: int = FRAMES) -> str:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(frames, DATA_CFG.height, DATA_CFG.width, 3), dtype=np.uint8)
    write_video(root / rel, pixels, fps=DATA_CFG.fps)
    return hashlib.sha256((root / rel).read_bytes()).hexdigest()


def _row(
    root: Path, set_name: str, index: int, split: str, identity: int, label: str, seed: int, frames: int = FRAMES
) -> dict:
    rel = f"{set_name}/{label or 'none'}/{set_name}_{index:03d}.mp4"
    return {
        "video_id": f"{set_name}_{index:03d}",
        "path": rel,
        "set": set_name,
        "split": split,
        "label": label,
        "label_id": CLASSES.index(label) if label else -1,
        "identity": identity,
        "frames": frames,
        "fps": float(DATA_CFG.fps),
        "width": DATA_CFG.width,
        "height": DATA_CFG.height,
        "checksum": _write_clip(root, rel, seed, frames),
    }


def _image_row(root: Path, index: int, split: str, identity: int) -> dict:
    rel = f"privacy_images/images/{split}/{index:04d}.png"
    pixels = np.random.default_rng(500 + index).integers(0, 255, (DATA_CFG.height, DATA_CFG.width, 3), dtype=np.uint8)
    write_image(root / rel, pixels)
    return {
        "video_id": f"img_{index:04d}",
        "path": rel,
        "set": "privacy_images",
        "split": split,
        "label": "",
        "label_id": -1,
        "identity": identity,
        "frames": 1,
        "fps": 0.0,
        "width": DATA_CFG.width,
        "height": DATA_CFG.height,
        "checksum": hashlib.sha256((root / rel).read_bytes()).hexdigest(),
        "skin_tone": index % 4,
        "gender": index % 2,
        "clothing": index % 6,
        "face": index % 3,
    }


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    """Three sets sharing one actor pool: trimmed actions, untrimmed videos with segments, images."""
    root = tmp_path_factory.mktemp("bench") / "data"
    root.mkdir()
    attributes = {
        "skin_tone": ["t0", "t1", "t2", "t3"],
        "gender": ["f", "m"],
        "clothing": list("rgbypo"),
        "face": ["none", "partial", "complete"],
    }
    (root / "classes.json").write_text(
        json.dumps(
            {
                "actions": CLASSES,
                "attributes": attributes,
                "sets": {"actions": CLASSES, "untrimmed": CLASSES, "privacy_images": [], "anomaly": ANOMALY_CLASSES},
            }
        )
    )
    plan = [("train", 0), ("train", 1), ("train", 2), ("val", 3), ("test", 4), ("test", 5)]
    actions = []
    for i, (split, identity) in enumerate(plan):
        row = _row(root, "actions", i, split, identity, CLASSES[i % 4], seed=i)
        row.update(skin_tone=i % 4, gender=i % 2, clothing=i % 6, face=-1)  # face unknown: allowed here
        actions.append(row)
    untrimmed = []
    for i, (split, identity) in enumerate(plan):
        row = _row(root, "untrimmed", i, split, identity, "", seed=100 + i, frames=16)  # 2 s at 8 fps
        row["segments"] = json.dumps([[0.25, 0.75, "walk"], [1.0, 2.0, "run"]])
        untrimmed.append(row)
    images = [_image_row(root, i, split, identity) for i, (split, identity) in enumerate(plan[2:5])]
    anomaly = []
    for i, (split, identity) in enumerate(plan[:2] + plan[3:]):
        label = ANOMALY_CLASSES[i % 2]
        row = _row(root, "anomaly", i, split, identity, "", seed=200 + i, frames=16)
        row.update(label=label, label_id=i % 2, anomaly=i % 2)
        row["segments"] = json.dumps([[0.5, 1.5, label]] if label != "Normal" else [])
        anomaly.append(row)
    manifests = {"actions": actions, "untrimmed": untrimmed, "privacy_images": images, "anomaly": anomaly}
    return root, {name: pd.DataFrame(rows) for name, rows in manifests.items()}


def _copy(manifests: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: df.copy() for name, df in manifests.items()}


def _run(root, manifests, tmp_path, **cfg):
    return validate_manifests(
        manifests, DATA_CFG, ValidateConfig(**cfg), root, tmp_path / "manifests", tmp_path / "reports"
    )


def _files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")} if path.exists() else set()


def test_clean_benchmark_passes_and_writes_only_its_outputs(bench, tmp_path, monkeypatch):
    root, manifests = bench
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HOME", str(workdir))
    before_root = _files_under(root)
    summary = _run(root, _copy(manifests), tmp_path)

    assert summary["success"] and summary["quarantined"] == 0
    assert summary["sets"]["actions"] == {"rows": 6, "kept": 6, "quarantined": 0, "success": True}
    assert summary["checks"] > 40
    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    assert report["success"] and all(e["success"] for s in report["sets"].values() for e in s["expectations"])
    assert "PASSED" in (tmp_path / "reports" / "summary.md").read_text()
    assert (tmp_path / "reports" / "quarantine.csv").read_text().strip() == "set,video_id,path,reason"
    # great-expectations' own HTML report of every suite's validation, linked from the summary
    docs = tmp_path / "reports" / "data_docs"
    assert summary["data_docs"] == str(docs / "index.html") and report["data_docs"] == "data_docs/index.html"
    assert "(data_docs/index.html)" in (tmp_path / "reports" / "summary.md").read_text()
    index = (docs / "index.html").read_text()
    for suite in ("files", "actions-content", "untrimmed-content"):
        assert suite in index, suite
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == len(manifests) + 1, "one validation page per suite: files and each set's content"
    actions = read_manifest(tmp_path / "manifests", "actions")
    assert actions["video_id"].tolist() == manifests["actions"]["video_id"].tolist()
    assert read_manifest(tmp_path / "manifests", "untrimmed")["segments"].iat[0] == [
        [0.25, 0.75, "walk"],
        [1.0, 2.0, "run"],
    ]
    assert summary["manifest_hashes"]["anomaly"] == manifest_hash(read_manifest(tmp_path / "manifests", "anomaly"))
    # nothing outside the two output folders: not the data root, not the working directory
    assert _files_under(root) == before_root
    assert not _files_under(workdir)
    assert {p.name for p in tmp_path.iterdir()} == {"cwd", "manifests", "reports"}


def test_corrupt_video_is_quarantined_with_its_reason(bench, tmp_path):
    root, manifests = bench
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "classes.json").write_text((root / "classes.json").read_text())
    manifests = _copy(manifests)
    for df in manifests.values():
        for rel in df["path"]:
            (broken / rel).parent.mkdir(parents=True, exist_ok=True)
            (broken / rel).write_bytes((root / rel).read_bytes())
    bad = manifests["actions"].iloc[2]
    (broken / bad["path"]).write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    manifests["untrimmed"].loc[0, "frames"] = 40  # the file holds 16: truncated since it was listed

    summary = _run(broken, manifests, tmp_path, max_quarantined_fraction=0.5)
    assert summary["quarantined"] == 2
    assert summary["sets"]["actions"]["kept"] == 5 and summary["sets"]["untrimmed"]["kept"] == 5
    reasons = dict(pd.read_csv(tmp_path / "reports" / "quarantine.csv")[["video_id", "reason"]].values)
    assert set(reasons) == {bad["video_id"], "untrimmed_000"}
    assert reasons[bad["video_id"]].startswith("unreadable:") and "cannot decode video" in reasons[bad["video_id"]]
    assert reasons["untrimmed_000"] == "decoded frames 16, manifest says 40"
    assert bad["video_id"] not in read_manifest(tmp_path / "manifests", "actions")["video_id"].tolist()
    assert bad["video_id"] in (tmp_path / "reports" / "summary.md").read_text()

    # the default limit (2 %) is exceeded by 1 of 6: the stage fails and says why
    with pytest.raises(ValidationFailed, match=r"set 'actions', check 'readable files.*" + bad["video_id"]):
        _run(broken, _copy(bench[1]), tmp_path / "strict")


def test_loader_error_and_missing_file_are_quarantined_without_decode(bench, tmp_path):
    root, manifests = bench
    manifests = _copy(manifests)
    manifests["actions"]["error"] = ""
    manifests["actions"].loc[1, "error"] = "cannot probe: moov atom not found"
    manifests["actions"].loc[1, "frames"] = -1
    manifests["actions"].loc[4, "path"] = "actions/walk/gone.mp4"
    summary = _run(root, manifests, tmp_path, max_quarantined_fraction=0.5, check_decode=False)
    reasons = dict(pd.read_csv(tmp_path / "reports" / "quarantine.csv")[["video_id", "reason"]].values)
    assert reasons == {"actions_001": "loader: cannot probe: moov atom not found", "actions_004": "file not found"}
    assert summary["sets"]["actions"]["kept"] == 4
    assert "error" not in read_manifest(tmp_path / "manifests", "actions").columns


def _set(df, row, column, value):
    try:
        df.loc[row, column] = value
    except TypeError:  # a value of another type than the column's: keep it as it is
        df[column] = df[column].astype(object)
        df.loc[row, column] = value


# Groups of independent breakages (distinct rows and checks), one validation run per group.
BREAKAGES = {
    "splits and labels": [
        (
            lambda m: _set(m["actions"], 4, "identity", 0),
            "actions",
            "test identities not in train or val",
            "actions_004",
        ),
        (lambda m: _set(m["actions"], 3, "identity", 1), "actions", "val identities not in train", "actions_003"),
        (
            lambda m: _set(m["actions"], 5, "checksum", m["actions"].loc[0, "checksum"]),
            "actions",
            "unique checksum",
            "actions_005",
        ),
        (
            lambda m: _set(m["actions"], 0, "label", "juggle"),
            "actions",
            "label in classes.json with its index",
            "actions_000",
        ),
        (
            lambda m: _set(m["actions"], 1, "label_id", 3),
            "actions",
            "label in classes.json with its index",
            "actions_001",
        ),
        (lambda m: _set(m["actions"], 2, "skin_tone", 4), "actions", "skin_tone id in range", "actions_002"),
        (
            lambda m: _set(m["untrimmed"], 5, "identity", 1),
            "untrimmed",
            "test identities not in train of other sets",
            "untrimmed_005",
        ),
    ],
    "intervals and cross-set duplicates": [
        (
            lambda m: _set(m["untrimmed"], 0, "segments", json.dumps([[1.0, 0.5, "walk"]])),
            "untrimmed",
            "segments start < end",
            "untrimmed_000",
        ),
        (
            lambda m: _set(m["untrimmed"], 1, "segments", json.dumps([[1.5, 2.5, "walk"]])),
            "untrimmed",
            "segments end <= duration",
            "untrimmed_001",
        ),
        (
            lambda m: _set(m["untrimmed"], 2, "segments", json.dumps([[0.0, 0.5, "juggle"]])),
            "untrimmed",
            "segment labels in classes.json",
            "untrimmed_002",
        ),
        (
            lambda m: _set(m["untrimmed"], 3, "segments", json.dumps([[-0.5, 0.5, "run"]])),
            "untrimmed",
            "segments start >= 0",
            "untrimmed_003",
        ),
        (
            lambda m: _set(m["untrimmed"], 4, "segments", json.dumps([[0.5]])),
            "untrimmed",
            "segments well formed",
            "untrimmed_004",
        ),
        (
            lambda m: _set(m["untrimmed"], 5, "checksum", m["actions"].loc[0, "checksum"]),
            "untrimmed",
            "checksum not shared with another set",
            "untrimmed_005",
        ),
        (lambda m: _set(m["actions"], 1, "fps", 25.0), "actions", f"fps = {DATA_CFG.fps}", "actions_001"),
    ],
    "anomaly annotations": [
        # rows: 0 train Normal, 1 train Fighting, 2 val Normal, 3 test Fighting, 4 test Normal
        (
            lambda m: _set(m["anomaly"], 0, "segments", json.dumps([[0.5, 1.0, "Fighting"]])),
            "anomaly",
            "normal videos have no anomaly interval",
            "anomaly_000",
        ),
        (
            lambda m: _set(m["anomaly"], 3, "segments", "[]"),
            "anomaly",
            "test anomalies have an interval",
            "anomaly_003",
        ),
        (lambda m: _set(m["anomaly"], 1, "anomaly", 0), "anomaly", "anomaly flag matches the class", "anomaly_001"),
        (
            lambda m: _set(m["anomaly"], 4, "segments", json.dumps([[0.5, 2.5, "Fighting"]])),
            "anomaly",
            "segments end <= duration",
            "anomaly_004",
        ),
    ],
    "values and types": [
        (lambda m: _set(m["actions"], 0, "split", "validation"), "actions", "split in train/val/test", "actions_000"),
        (lambda m: _set(m["actions"], 1, "set", "untrimmed"), "actions", "set column names this set", "actions_001"),
        (lambda m: _set(m["actions"], 2, "identity", -1), "actions", "identity known", "actions_002"),
        (lambda m: _set(m["actions"], 3, "checksum", "XYZ"), "actions", "checksum is sha256 hex", "actions_003"),
        (lambda m: _set(m["actions"], 4, "label", 7), "actions", "schema: label is text", "actions_004"),
        (
            lambda m: _set(m["privacy_images"], 0, "skin_tone", -1),
            "privacy_images",
            "skin_tone id labelled and in range",
            "img_0000",
        ),
        (lambda m: _set(m["actions"], 5, "video_id", "actions_000"), "actions", "unique video_id", "actions_000"),
        (
            lambda m: m["untrimmed"].insert(12, "anomaly", [2, 0, 0, 0, 1, 1]),
            "untrimmed",
            "anomaly is 0/1",
            "untrimmed_000",
        ),
    ],
}


@pytest.mark.parametrize("group", sorted(BREAKAGES))
def test_each_broken_expectation_fails_with_a_clear_message(bench, tmp_path, group):
    root, manifests = bench
    manifests = _copy(manifests)
    for mutate, *_ in BREAKAGES[group]:
        mutate(manifests)
    with pytest.raises(ValidationFailed) as failure:
        _run(root, manifests, tmp_path)
    message = str(failure.value)
    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    for _, set_name, check, row in BREAKAGES[group]:
        assert f"set '{set_name}', check '{check}'" in message, (check, message)
        entry = next(e for e in report["sets"][set_name]["expectations"] if e["check"] == check)
        assert not entry["success"] and row in entry["unexpected_rows"], (check, entry)
    assert "**FAIL**" in (tmp_path / "reports" / "summary.md").read_text()
    assert not (tmp_path / "manifests").exists()  # nothing downstream may read failed data
    # the Data Docs of a failed validation say so too
    assert "Failed" in (tmp_path / "reports" / "data_docs" / "index.html").read_text()


def test_missing_column_and_wrong_type_fail_the_schema(bench, tmp_path):
    root, manifests = bench
    manifests = _copy(manifests)
    manifests["actions"] = manifests["actions"].drop(columns=["label_id"])
    manifests["untrimmed"]["frames"] = manifests["untrimmed"]["frames"].astype(float)
    with pytest.raises(ValidationFailed) as failure:
        _run(root, manifests, tmp_path)
    message = str(failure.value)
    assert "set 'actions', check 'schema: required columns'" in message and "label_id" in message
    assert "set 'untrimmed', check 'schema: frames is integer'" in message


def test_unknown_identities_pass_only_when_not_required(bench, tmp_path):
    root, manifests = bench
    manifests = _copy(manifests)
    manifests["actions"].loc[[0, 4], "identity"] = -1  # e.g. a real dataset without identity sidecar
    with pytest.raises(ValidationFailed, match=r"check 'identity known'.*actions_000, actions_004"):
        _run(root, _copy(manifests), tmp_path / "strict")
    summary = _run(root, manifests, tmp_path / "relaxed", require_identity=False)
    assert summary["success"] and summary["sets"]["actions"]["kept"] == 6


def test_wrong_size_fails(bench, tmp_path):
    root, manifests = bench
    cfg = DataConfig(height=24, width=16, fps=DATA_CFG.fps)
    with pytest.raises(ValidationFailed, match="check 'height = 24'"):
        validate_manifests(_copy(manifests), cfg, ValidateConfig(), root, tmp_path / "m", tmp_path / "r")


TINY = DataConfig(
    n_identities_train=3,
    n_identities_val=1,
    n_identities_test=1,
    n_identities_pretrain=3,
    pretrain_videos_per_class=1,
    trimmed_frames=16,
    untrimmed_frames=64,
    privacy_images_per_identity=1,
    privacy_videos_per_identity=1,
    anomaly_videos_per_identity=2,
    workers=1,
)


@pytest.mark.slow
def test_generated_benchmark_validates_end_to_end(tmp_path):
    from latentanon.data.synthetic import generate_benchmark
    from latentanon.data.validation import validate_benchmark

    root = tmp_path / "benchmark"
    generate_benchmark(TINY, root, tmp_path / "generate")
    summary = validate_benchmark(TINY, ValidateConfig(), root, tmp_path / "manifests", tmp_path / "validate")
    assert summary["success"] and summary["quarantined"] == 0
    assert summary["decoded_by"] == "loaders"  # decoded once, by the loaders, not again
    assert set(summary["sets"]) == {
        "pretrain",
        "actions",
        "privacy_videos",
        "privacy_images",
        "untrimmed",
        "anomaly",
        "bias",
    }
    anomaly = read_manifest(tmp_path / "manifests", "anomaly")
    assert anomaly["segments"].map(len).gt(0).any() and anomaly["anomaly"].isin([0, 1]).all()
    first = read_manifest(tmp_path / "manifests", "actions")
    assert set(first["split"]) == {"train", "val", "test"}
    for name, digest in summary["manifest_hashes"].items():  # the CSV round trip loses nothing
        assert manifest_hash(read_manifest(tmp_path / "manifests", name)) == digest, name

    # a damaged file on disk: the loader cannot probe it, validation quarantines it by name
    victim = root / first["path"].iat[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    summary = validate_benchmark(
        TINY, ValidateConfig(max_quarantined_fraction=1.0), root, tmp_path / "manifests", tmp_path / "validate"
    )
    quarantine = pd.read_csv(tmp_path / "validate" / "quarantine.csv")
    assert quarantine["video_id"].tolist() == [first["video_id"].iat[0]]
    after = read_manifest(tmp_path / "manifests", "actions")
    assert len(after) == len(first) - 1
    assert manifest_hash(after) != manifest_hash(first)


def test_manifests_the_loaders_just_decoded_are_not_decoded_again(bench, tmp_path, monkeypatch):
    from latentanon.data import video_io

    root, manifests = bench

    def no_second_decode(path):
        raise AssertionError(f"{path} decoded again")

    monkeypatch.setattr(video_io, "scan_video", no_second_decode)
    summary = validate_manifests(
        _copy(manifests),
        DATA_CFG,
        ValidateConfig(),
        root,
        tmp_path / "manifests",
        tmp_path / "reports",
        decoded_seconds=2.5,
    )
    assert summary["success"] and summary["decoded_by"] == "loaders" and summary["decode_seconds"] >= 2.5
    assert "full decode by the loaders" in (tmp_path / "reports" / "summary.md").read_text()
    # a loader's decode failure still quarantines the file, by the loader's words
    broken = _copy(manifests)
    broken["actions"].loc[0, "error"] = "cannot probe: moov atom not found"
    summary = validate_manifests(
        broken,
        DATA_CFG,
        ValidateConfig(max_quarantined_fraction=0.5),
        root,
        tmp_path / "m2",
        tmp_path / "r2",
        decoded_seconds=1.0,
    )
    assert summary["quarantined"] == 1
    # manifests from elsewhere are decoded here
    with pytest.raises(AssertionError, match="decoded again"):
        validate_manifests(_copy(manifests), DATA_CFG, ValidateConfig(), root, tmp_path / "m3", tmp_path / "r3")


def test_classes_json_problems_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"classes\.json: classes\.json not found"):
        load_vocabulary(tmp_path)
    (tmp_path / "classes.json").write_text("{not json")
    with pytest.raises(DataError, match=r"classes\.json: not valid JSON"):
        load_vocabulary(tmp_path)
    (tmp_path / "classes.json").write_text(json.dumps({"sets": {"actions": ["walk", "walk"]}}))
    with pytest.raises(DataError, match="sets.actions has duplicate class names"):
        load_vocabulary(tmp_path)
    (tmp_path / "classes.json").write_text(json.dumps({"sets": {"actions": ["walk"]}, "attributes": {"gender": []}}))
    with pytest.raises(DataError, match="attribute 'gender' needs"):
        load_vocabulary(tmp_path)
    (tmp_path / "classes.json").write_text(
        json.dumps(
            {
                "actions": ["walk", "run"],
                "sets": {"anomaly": ["Normal", "Fall"]},
                "attributes": {"face": ["a", "b", "c"]},
            }
        )
    )
    vocab = load_vocabulary(tmp_path)
    assert vocab.classes("anomaly") == ("Normal", "Fall") and vocab.classes("bias") == ("walk", "run")
    assert vocab.attribute_sizes == {"face": 3}


def test_quarantine_limit_must_be_a_fraction(bench, tmp_path):
    root, manifests = bench
    with pytest.raises(LatentanonError, match="max_quarantined_fraction must be in"):
        _run(root, _copy(manifests), tmp_path, max_quarantined_fraction=1.5)
    assert not list(tmp_path.iterdir())


def test_data_docs_go_to_a_folder_given_relative_to_the_working_directory(tmp_path, monkeypatch):
    """The main job's workdir is ".": the report folder reaches great-expectations relative."""
    from latentanon.data.gx_runner import _ephemeral_context as ephemeral_context
    from latentanon.data.gx_runner import build_data_docs

    monkeypatch.chdir(tmp_path)
    index = build_data_docs(ephemeral_context(), Path("reports") / "validate" / "data_docs")
    assert index == Path("reports") / "validate" / "data_docs" / "index.html"
    assert (tmp_path / index).is_file()
