"""Loaders: generated data, small hand-written files in the real datasets' formats, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latentanon.data import layouts
from latentanon.data.config import DataConfig
from latentanon.data.loaders import build_manifests, load_set, manifest_columns, manifest_hash
from latentanon.data.synthetic import generate_benchmark
from latentanon.data.video_io import write_image, write_video
from latentanon.errors import DataError

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
# real datasets have no sidecars; their split rule still holds out validation identities
REAL = DataConfig(n_identities_train=3, n_identities_val=1, n_identities_test=1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("gen")
    generate_benchmark(TINY, base / "data", base / "reports")
    return base / "data", build_manifests(TINY, base / "data")


def _video(path: Path, frames: int = 4) -> None:
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    write_video(path, rng.integers(0, 255, (frames, 16, 16, 3), dtype=np.uint8), fps=8)


# ----------------------------------------------------------------------------- generated data


def test_generated_manifests_follow_the_contract(generated):
    root, manifests = generated
    assert set(manifests) == set(layouts.SETS)
    for name, df in manifests.items():
        assert list(df.columns) == list(manifest_columns(name))
        assert (df["error"] == "").all(), df.loc[df["error"] != "", ["path", "error"]]
        # Kinetics has no labelled test split; every other set has all three
        assert set(df["split"]) == ({"train", "val"} if name == "pretrain" else {"train", "val", "test"}), name
        assert (df["set"] == name).all()
        assert df["checksum"].str.len().eq(64).all() and df["checksum"].is_unique
        for rel in df["path"]:
            assert (root / rel).is_file() and not Path(rel).is_absolute()
        assert df["video_id"].is_unique
        # identities never cross splits
        by_split = [set(df.loc[df["split"] == s, "identity"]) for s in ("train", "val", "test")]
        assert not (by_split[0] & by_split[1] or by_split[0] & by_split[2] or by_split[1] & by_split[2]), name
    actions = manifests["actions"]
    assert (actions["frames"] == TINY.trimmed_frames).all() and (actions["fps"] == TINY.fps).all()
    assert (actions["width"] == TINY.width).all() and actions["label_id"].between(0, 11).all()
    assert set(manifests["privacy_videos"]["face"]) <= {0, 1, 2}
    assert (manifests["privacy_images"]["frames"] == 1).all()
    assert manifests["anomaly"]["anomaly"].isin([0, 1]).all() and manifests["anomaly"]["anomaly"].sum() > 0
    assert (manifests["bias"]["subject"] == manifests["bias"]["identity"]).all()


def test_generated_attributes_and_segments_are_consistent(generated):
    root, manifests = generated
    pv = manifests["privacy_videos"]
    side = pd.read_csv(root / "privacy_videos" / layouts.SIDECAR_FILE)
    side["path"] = "privacy_videos/" + side["path"]
    merged = pv.merge(side, on="path", suffixes=("", "_side"))
    assert len(merged) == len(pv)
    for col in ("skin_tone", "gender", "clothing", "face"):
        assert (merged[col] == merged[f"{col}_side"]).all(), col
    for _, row in manifests["untrimmed"].iterrows():
        spans = json.loads(row["segments"])
        assert spans and all(0 <= s < e <= row["frames"] / row["fps"] + 1e-6 for s, e, _ in spans)
    anomaly = manifests["anomaly"]
    for _, row in anomaly.iterrows():
        spans = json.loads(row["segments"])
        assert bool(spans) == bool(row["anomaly"])
        assert all(0 <= s < e <= row["frames"] / row["fps"] + 1e-6 for s, e, _ in spans)


def test_validation_identities_come_from_the_official_train_split(generated):
    _, manifests = generated
    # ids 1..3 are train, 4 val, 5 test (layouts.held_out_identities: highest ids of train list)
    actions = manifests["actions"]
    assert set(actions.loc[actions["split"] == "val", "identity"]) == {4}
    assert set(actions.loc[actions["split"] == "test", "identity"]) == {5}


def test_manifest_hash_is_stable(generated, tmp_path):
    _, manifests = generated
    df = manifests["untrimmed"]
    digest = manifest_hash(df)
    assert manifest_hash(df.sample(frac=1.0, random_state=0)[list(reversed(df.columns))]) == digest
    df.to_csv(tmp_path / "m.csv", index=False)
    back = pd.read_csv(tmp_path / "m.csv", keep_default_na=False)
    back["segments"] = back["segments"].map(json.loads)
    assert manifest_hash(back) == digest
    changed = df.copy()
    changed.loc[0, "label_id"] = 3
    assert manifest_hash(changed) != digest


# ----------------------------------------------------------------------------- hand-written real formats


def test_ucf101_real_format(tmp_path):
    root = tmp_path
    lists = root / "actions" / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    train = []
    for cls in ("ApplyEyeMakeup", "Archery"):
        for g in (8, 9, 10, 11):
            name = f"{cls}/v_{cls}_g{g:02d}_c01.avi"
            _video(root / "actions" / "UCF101" / name)
            train.append(f"{name} {1 if cls == 'ApplyEyeMakeup' else 2}")
        _video(root / "actions" / "UCF101" / f"{cls}/v_{cls}_g01_c01.avi")
    (lists / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n")
    (lists / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n"
    )
    df = load_set(REAL, root, "actions")
    assert len(df) == 10 and (df["error"] == "").all()
    assert set(df.loc[df["split"] == "test", "identity"]) == {1}
    assert set(df.loc[df["split"] == "val", "identity"]) == {11}  # 1/4 of groups 8..11
    assert df.loc[df["video_id"] == "v_Archery_g08_c01", "label_id"].item() == 1
    assert (df["skin_tone"] == -1).all() and (df["frames"] == 4).all()


def test_hmdb51_with_pa_hmdb51_attributes(tmp_path):
    set_dir = tmp_path / "privacy_videos"
    splits = set_dir / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    names = [f"Movie{i}_wave_u_nm_np1_fr_med_{i}.avi" for i in range(4)]
    for name in names:
        _video(set_dir / "hmdb51" / "wave" / name)
    (splits / "wave_test_split1.txt").write_text(f"{names[0]} 1 \n{names[1]} 1 \n{names[2]} 2 \n{names[3]} 0 \n")
    pa = {names[0]: {"face": [[0, 1, 1], [2, 3, 2]], "gender": [[0, 3, 2]], "skin_color": [[0, 3, 0]]}}
    (set_dir / "PrivacyAttributes").mkdir()
    (set_dir / "PrivacyAttributes" / "wave.json").write_text(json.dumps(pa))
    df = load_set(REAL, tmp_path, "privacy_videos")
    assert len(df) == 3  # split value 0 = unused
    first = df.loc[df["video_id"] == Path(names[0]).stem].iloc[0]
    assert first["gender"] == 1 and first["skin_tone"] == -1 and first["face"] in (1, 2)
    assert set(df["split"]) <= {"train", "val", "test"} and (df["split"] == "test").sum() == 1
    # no identities in real HMDB51: identity stays unknown, validation is a stable hash of the id
    assert (df["identity"] == -1).all()


def test_hmdb51_split_list_without_a_class_name_is_refused(tmp_path):
    splits = tmp_path / "privacy_videos" / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    (splits / "_test_split1.txt").write_text("")  # matched by the listing glob, names no class
    with pytest.raises(DataError, match=r"_test_split1.txt: expected <class>_test_split1.txt"):
        load_set(REAL, tmp_path, "privacy_videos")


def test_thumos14_real_format(tmp_path):
    set_dir = tmp_path / "untrimmed"
    for folder, tag, video in (
        ("validation", "val", "video_validation_0000051"),
        ("test", "test", "video_test_0000004"),
    ):
        notes = set_dir / "annotation" / folder
        notes.mkdir(parents=True)
        (notes / f"BaseballPitch_{tag}.txt").write_text(f"{video} 0.2  0.6\n{video} 0.1 0.15\n")
        (notes / f"Ambiguous_{tag}.txt").write_text(f"{video} 0.0 0.1\n")
        _video(set_dir / "videos" / folder / f"{video}.mp4", frames=8)
    df = load_set(REAL, tmp_path, "untrimmed")
    assert len(df) == 2 and set(df["split"]) <= {"train", "val", "test"}
    row = df.loc[df["video_id"] == "video_validation_0000051"].iloc[0]
    assert json.loads(row["segments"]) == [[0.1, 0.15, "BaseballPitch"], [0.2, 0.6, "BaseballPitch"]]


def test_ucf_crime_real_format(tmp_path):
    set_dir = tmp_path / "anomaly"
    _video(set_dir / "Anomaly-Videos" / "Abuse" / "Abuse001_x264.mp4", frames=8)
    _video(set_dir / "Anomaly-Videos" / "Abuse" / "Abuse028_x264.mp4", frames=8)
    _video(set_dir / "Training_Normal_Videos_Anomaly" / "Normal_Videos001_x264.mp4", frames=8)
    _video(set_dir / "Testing_Normal_Videos_Anomaly" / "Normal_Videos_003_x264.mp4", frames=8)
    (set_dir / "Anomaly_Train.txt").write_text(
        "Abuse/Abuse001_x264.mp4\nTraining_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4\n"
    )
    (set_dir / "Anomaly_Test.txt").write_text(
        "Abuse/Abuse028_x264.mp4\nTesting_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4\n"
    )
    (set_dir / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").write_text(
        "Abuse028_x264.mp4  Abuse  2  3  -1  -1\nNormal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
    )
    df = load_set(REAL, tmp_path, "anomaly").set_index("video_id")
    assert df.loc["Abuse028_x264", "anomaly"] == 1 and df.loc["Normal_Videos_003_x264", "anomaly"] == 0
    assert json.loads(df.loc["Abuse028_x264", "segments"]) == [[0.25, 0.5, "Abuse"]]  # frames 2..3 at 8 fps
    assert json.loads(df.loc["Abuse001_x264", "segments"]) == []
    assert df.loc["Normal_Videos001_x264", "label"] == "Normal"


def test_kinetics_vispr_and_ntu_real_formats(tmp_path):
    pre = tmp_path / "pretrain"
    (pre / "annotations").mkdir(parents=True)
    (pre / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,---QUuC4vJs,84,94,train\n"
    )
    (pre / "annotations" / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nair drumming,--nQbRBEz2s,104,114,val\n"
    )
    _video(pre / "train" / "abseiling" / "---QUuC4vJs_000084_000094.mp4")
    _video(pre / "val" / "air drumming" / "--nQbRBEz2s_000104_000114.mp4")
    images = tmp_path / "privacy_images"
    for folder in ("train2017", "test2017"):
        write_image(images / "images" / folder / f"2017_1{folder[:2]}.png", np.zeros((6, 6, 3), np.uint8))
        (images / "annotations" / folder).mkdir(parents=True)
        (images / "annotations" / folder / f"2017_1{folder[:2]}.json").write_text(
            json.dumps({"id": f"2017_1{folder[:2]}", "labels": ["a1_age_approx", "a10_face_partial"]})
        )
    ntu = tmp_path / "bias" / "nturgb+d_rgb"
    _video(ntu / "S001C001P001R001A001_rgb.avi")
    _video(ntu / "S001C002P003R002A002_rgb.avi")
    manifests = build_manifests(REAL, tmp_path)
    assert set(manifests) == {"pretrain", "privacy_images", "bias"}
    pre_df = manifests["pretrain"].set_index("video_id")
    assert pre_df.loc["--nQbRBEz2s_000104_000114", "split"] == "val"
    assert pre_df.loc["--nQbRBEz2s_000104_000114", "label"] == "air drumming"
    img = manifests["privacy_images"]
    assert (img["face"] == 1).all() and (img["frames"] == 1).all() and set(img["split"]) <= {"train", "test", "val"}
    bias = manifests["bias"].set_index("subject")
    # standard NTU cross-subject split: subject 1 trains, 3 tests; no gender file, so unknown
    assert bias.loc[3, "split"] == "test" and bias.loc[1, "split"] in ("train", "val")
    assert bias.loc[3, "label"] == "A002" and bias.loc[3, "label_id"] == 1 and (bias["gender"] == -1).all()


# ----------------------------------------------------------------------------- bad input


def _ucf_skeleton(root: Path, train_lines: str) -> Path:
    lists = root / "actions" / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("1 Archery\n")
    (lists / "trainlist01.txt").write_text(train_lines)
    (lists / "testlist01.txt").write_text("")
    return lists


def test_unknown_class_names_file_and_line(tmp_path):
    _ucf_skeleton(tmp_path, "Archery/v_Archery_g08_c01.avi 1\nBowling/v_Bowling_g08_c01.avi 2\n")
    with pytest.raises(DataError, match=r"trainlist01.txt:2: unknown class 'Bowling'"):
        load_set(REAL, tmp_path, "actions")


def test_path_escaping_the_root_is_refused(tmp_path):
    _ucf_skeleton(tmp_path, "Archery/../../../../etc/v_Archery_g08_c01.avi 1\n")
    with pytest.raises(DataError, match=r"trainlist01.txt:1: path .* escapes the dataset root"):
        load_set(REAL, tmp_path, "actions")


def test_corrupt_truncated_and_missing_videos_are_marked_not_raised(tmp_path):
    _ucf_skeleton(tmp_path, "".join(f"Archery/v_Archery_g{g:02d}_c01.avi 1\n" for g in (8, 9, 10, 11)))
    base = tmp_path / "actions" / "UCF101" / "Archery"
    _video(base / "v_Archery_g08_c01.avi")
    _video(base / "v_Archery_g09_c01.avi", frames=30)
    data = (base / "v_Archery_g09_c01.avi").read_bytes()
    (base / "v_Archery_g09_c01.avi").write_bytes(data[: len(data) // 3])  # truncated
    (base / "v_Archery_g10_c01.avi").write_bytes(b"\x00" * 2048)  # corrupt
    df = load_set(REAL, tmp_path, "actions").set_index("video_id")
    assert df.loc["v_Archery_g08_c01", "error"] == "" and df.loc["v_Archery_g08_c01", "frames"] == 4
    assert df.loc["v_Archery_g11_c01", "error"] == "file not found"
    assert df.loc["v_Archery_g11_c01", "frames"] == -1
    corrupt = df.loc["v_Archery_g10_c01"]
    assert corrupt["frames"] == -1 and "v_Archery_g10_c01.avi" in corrupt["error"]
    truncated = df.loc["v_Archery_g09_c01"]
    assert truncated["error"] != "" or truncated["frames"] < 30


def test_malformed_annotation_lines_name_file_and_line(tmp_path):
    notes = tmp_path / "untrimmed" / "annotation" / "validation"
    notes.mkdir(parents=True)
    (notes / "Diving_val.txt").write_text("video_validation_0000001 1.0 2.0\nvideo_validation_0000001 3.0 x\n")
    with pytest.raises(DataError, match=r"Diving_val.txt:2: end 'x' is not a number"):
        load_set(REAL, tmp_path, "untrimmed")
    (notes / "Diving_val.txt").write_text("video_validation_0000001 4.0 2.0\n")
    with pytest.raises(DataError, match=r"Diving_val.txt:1: interval"):
        load_set(REAL, tmp_path, "untrimmed")


def test_temporal_annotation_with_other_class_is_refused(tmp_path):
    set_dir = tmp_path / "anomaly"
    set_dir.mkdir()
    (set_dir / "Anomaly_Train.txt").write_text("")
    (set_dir / "Anomaly_Test.txt").write_text("Abuse/Abuse028_x264.mp4\nArson/Arson001_x264.mp4\n")
    (set_dir / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").write_text(
        "Abuse028_x264.mp4  Arson  2  3  -1  -1\n"
    )
    with pytest.raises(DataError, match="Anomaly_Test.txt:1: .*temporal annotation says 'Arson'"):
        load_set(REAL, tmp_path, "anomaly")


def test_missing_root_and_sets(tmp_path):
    with pytest.raises(DataError, match="data root not found"):
        build_manifests(REAL, tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="none of the set folders"):
        build_manifests(REAL, tmp_path / "empty")


def test_scan_video_agrees_with_the_full_rgb_decode(generated, tmp_path):
    from latentanon.data.video_io import read_video, scan_video

    root, manifests = generated
    for rel in manifests["untrimmed"]["path"][:2]:
        frames = read_video(root / rel)
        scanned = scan_video(root / rel)
        assert (scanned["frames"], scanned["height"], scanned["width"]) == frames.shape[:3]
    (tmp_path / "x.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    with pytest.raises(DataError, match="x.mp4"):
        scan_video(tmp_path / "x.mp4")
