"""Real datasets as their archives unpack: official folder names, AVI and mp4, CRLF lists, no
sidecars and no classes.json; validate and extract run on them without the generator."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from latentanon.data.config import DataConfig, ValidateConfig
from latentanon.data.loaders import load_set
from latentanon.data.validation import validate_benchmark
from latentanon.encoders.config import ExtractConfig
from latentanon.encoders.extraction import SET_KINDS, extract_features, finalize_store
from latentanon.errors import DataError
from latentanon.features.store import load_feature_set
from test_extraction import make_encoder

FPS = 10
SIZE = (30, 40)  # 4:3 like the real 320x240 sources, not the encoder's 32x32


def _write(path: Path, frames: int, seed: int, fps: int = FPS) -> None:
    """A tiny noisy video; AVI (MPEG-4 part 2) or mp4 (H.264) by suffix, as the archives ship."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    avi = path.suffix == ".avi"
    with av.open(str(path), mode="w", format="avi" if avi else "mp4") as container:
        stream = container.add_stream("mpeg4" if avi else "libx264", rate=fps)
        stream.height, stream.width = SIZE
        stream.pix_fmt = "yuv420p"
        base = rng.integers(0, 255, size=(*SIZE, 3))
        for t in range(frames):
            frame = np.clip(base + 5 * t + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _lines(path: Path, lines: list[str]) -> None:
    """A list file as the archives write it: CRLF line ends (and a trailing space here and there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())


def build_official_root(root: Path) -> None:
    seed = 0
    # UCF101: UCF-101/<Class>/v_<Class>_gGG_cCC.avi + ucfTrainTestlist (split 1: groups 1-7 test)
    ucf = root / "actions"
    classes = ["ApplyEyeMakeup", "Archery"]
    _lines(ucf / "ucfTrainTestlist" / "classInd.txt", [f"{i + 1} {c}" for i, c in enumerate(classes)])
    train, test = [], []
    for i, cls in enumerate(classes):
        for group in (1, 8, 9, 10, 11):
            seed += 1
            entry = f"{cls}/v_{cls}_g{group:02d}_c01.avi"
            _write(ucf / "UCF-101" / entry, 12, seed)
            (test.append(entry) if group <= 7 else train.append(f"{entry} {i + 1}"))
    _lines(ucf / "ucfTrainTestlist" / "trainlist01.txt", train)
    _lines(ucf / "ucfTrainTestlist" / "testlist01.txt", test)
    # HMDB51: hmdb51_org/<class>/<video>.avi + testTrainMulti_7030_splits/<class>_test_split1.txt
    hmdb = root / "privacy_videos"
    for cls in ("brush_hair", "wave"):
        listing = []
        for k, tag in enumerate((1, 1, 1, 1, 2, 2, 0)):
            seed += 1
            name = f"{cls}_clip_{k}.avi"
            _write(hmdb / "hmdb51_org" / cls / name, 12, seed)
            listing.append(f"{name} {tag} ")
        _lines(hmdb / "testTrainMulti_7030_splits" / f"{cls}_test_split1.txt", listing)
    # THUMOS14: the archives' annotation folders and validation/ + test/ video folders
    thumos = root / "untrimmed"
    for folder, tag, notes in (
        ("validation", "val", "TH14_Temporal_annotations_validation/annotation"),
        ("test", "test", "TH14_Temporal_annotations_test/annotation"),
    ):
        spans = {"BaseballPitch": [], "CliffDiving": []}
        for k in range(3):
            seed += 1
            video = f"video_{folder}_{k + 1:07d}"
            _write(thumos / folder / f"{video}.mp4", 40, seed)
            spans["BaseballPitch" if k % 2 else "CliffDiving"].append(f"{video} 0.5 2.0")
            spans["BaseballPitch"].append(f"{video} 2.5 3.5")
        for cls, lines in spans.items():
            _lines(thumos / notes / f"{cls}_{tag}.txt", lines)
        _lines(thumos / notes / f"Ambiguous_{tag}.txt", [f"video_{folder}_0000001 3.6 3.9"])
    # UCF-Crime: Anomaly-Videos-Part-*/, Training-Normal-Videos-Part-*/, Testing_Normal_Videos_Anomaly/
    crime = root / "anomaly"
    train, test, temporal = [], [], []
    for part, cls in ((1, "Abuse"), (2, "Arson")):
        for k in (1, 2, 3):
            seed += 1
            name = f"{cls}{k:03d}_x264.mp4"
            _write(crime / f"Anomaly-Videos-Part-{part}" / cls / name, 40, seed)
            if k == 3:
                test.append(f"{cls}/{name}")
                temporal.append(f"{name}  {cls}  5  20  -1  -1")
            else:
                train.append(f"{cls}/{name}")
    for k in (1, 2, 3):
        seed += 1
        name = f"Normal_Videos{k:03d}_x264.mp4"
        _write(crime / "Training-Normal-Videos-Part-1" / name, 40, seed)
        train.append(f"Training_Normal_Videos_Anomaly/{name}")
    seed += 1
    _write(crime / "Testing_Normal_Videos_Anomaly" / "Normal_Videos_004_x264.mp4", 40, seed)
    test.append("Testing_Normal_Videos_Anomaly/Normal_Videos_004_x264.mp4")
    temporal.append("Normal_Videos_004_x264.mp4  Normal  -1  -1  -1  -1")
    lists = crime / "UCF_Crimes-Train-Test-Split" / "Anomaly_Detection_splits"
    _lines(lists / "Anomaly_Train.txt", train)
    _lines(lists / "Anomaly_Test.txt", test)
    _lines(crime / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt", temporal)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = tmp_path_factory.mktemp("official") / "data"
    build_official_root(root)
    return root


def test_loaders_read_the_archives_own_folder_names(official):
    cfg = DataConfig()
    actions = load_set(cfg, official, "actions", progress=False)
    assert actions["path"].str.startswith("actions/UCF-101/").all() and (actions["error"] == "").all()
    assert sorted(actions["label"].unique()) == ["ApplyEyeMakeup", "Archery"]
    assert set(actions.loc[actions["split"] == "test", "identity"]) == {1}
    assert (actions["width"] == 40).all() and (actions["height"] == 30).all() and (actions["frames"] == 12).all()
    hmdb = load_set(cfg, official, "privacy_videos", progress=False)
    assert len(hmdb) == 12 and hmdb["path"].str.startswith("privacy_videos/hmdb51_org/").all()
    assert (hmdb["error"] == "").all()
    thumos = load_set(cfg, official, "untrimmed", progress=False)
    assert {"test", "train"} <= set(thumos["split"]) <= {"test", "train", "val"} and len(thumos) == 6
    assert (thumos["error"] == "").all()
    crime = load_set(cfg, official, "anomaly", progress=False).set_index("video_id")
    assert (crime["error"] == "").all()
    assert crime.loc["Abuse001_x264", "path"] == "anomaly/Anomaly-Videos-Part-1/Abuse/Abuse001_x264.mp4"
    assert (
        crime.loc["Normal_Videos001_x264", "path"] == "anomaly/Training-Normal-Videos-Part-1/Normal_Videos001_x264.mp4"
    )
    assert crime.loc["Normal_Videos001_x264", "label"] == "Normal"
    assert crime.loc["Arson003_x264", "segments"] == '[[0.5, 2.1, "Arson"]]'


def test_missing_layout_names_what_was_looked_for_and_found(tmp_path):
    lists = tmp_path / "actions" / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    with pytest.raises(DataError, match=r"classInd.txt: annotation file not found .*ucfTrainTestlist is empty"):
        load_set(DataConfig(), tmp_path, "actions", progress=False)
    _lines(lists / "classInd.txt", ["1 Archery"])
    _lines(lists / "trainlist01.txt", ["Archery/v_Archery_g08_c01.avi 1"])
    _lines(lists / "testlist01.txt", [])
    (tmp_path / "actions" / "UCF101_videos").mkdir()
    with pytest.raises(DataError, match=r"looked for UCF101/, UCF-101/.*holds UCF101_videos/, ucfTrainTestlist/"):
        load_set(DataConfig(), tmp_path, "actions", progress=False)
    notes = tmp_path / "untrimmed" / "TH14_Temporal_annotations_validation" / "annotation"
    notes.mkdir(parents=True)
    (notes / "CliffDiving_val.txt").write_text("video_validation_0000001 1.0 2.0\n")
    with pytest.raises(
        DataError, match=r"no THUMOS14 validation video folder \(looked for videos/validation/, validation/"
    ):
        load_set(DataConfig(), tmp_path, "untrimmed", progress=False)
    (tmp_path / "anomaly").mkdir()
    with pytest.raises(DataError, match=r"no UCF-Crime split list .*Anomaly_Detection_splits/Anomaly_Train.txt"):
        load_set(DataConfig(), tmp_path, "anomaly", progress=False)


@pytest.mark.slow
def test_validate_and_extract_without_classes_json(official, tmp_path):
    assert not (official / "classes.json").exists()
    data_cfg = DataConfig(root=str(official))
    summary = validate_benchmark(
        data_cfg, ValidateConfig(require_identity=False), official, tmp_path / "manifests", tmp_path / "report"
    )
    assert summary["success"] and summary["quarantined"] == 0
    assert set(summary["sets"]) == {"actions", "privacy_videos", "untrimmed", "anomaly"}
    encoder_dir = tmp_path / "encoder"
    make_encoder(encoder_dir)
    cfg = ExtractConfig(
        batch_size=8,
        num_workers=0,
        clips_per_video=2,
        static_per_video=2,
        videos_per_shard=8,
        device="cpu",
        sets=tuple(summary["sets"]),
    )
    store = str(tmp_path / "store")
    extract_features(cfg, data_cfg, tmp_path / "manifests", official, encoder_dir, store)
    finalize_store(store)
    for name in summary["sets"]:
        fs = load_feature_set(store, name)
        manifest = pd.read_csv(tmp_path / "manifests" / f"{name}.csv")
        assert len(fs.records) == len(manifest)
        for kind in SET_KINDS[name]:
            counts = {len(a) for a in fs.kind(kind)}
            # 40-frame untrimmed videos give snippets at 0 and 16; trimmed videos 2 clips; 2 static
            assert counts == {2}, (name, kind, counts)
            assert all(np.isfinite(a).all() for a in fs.kind(kind))


def test_validate_refuses_a_wrong_size_only_when_classes_json_declares_the_benchmark(official, tmp_path):
    """With classes.json the root is the synthetic benchmark: its fixed frame size is checked."""
    import json
    import shutil

    from latentanon.errors import ValidationFailed

    root = tmp_path / "data"
    shutil.copytree(official / "actions", root / "actions")
    (root / "classes.json").write_text(json.dumps({"sets": {"actions": ["ApplyEyeMakeup", "Archery"]}}))
    with pytest.raises(ValidationFailed, match=f"width = {DataConfig().width}"):
        validate_benchmark(
            replace(DataConfig(), root=str(root)),
            ValidateConfig(require_identity=False),
            root,
            tmp_path / "m",
            tmp_path / "r",
        )
