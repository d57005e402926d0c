"""Feature extraction into the sharded store: kinds per set, resume after a kill, no videos needed to read."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from latentanon.data.config import DataConfig
from latentanon.data.manifests import read_manifest, write_manifest
from latentanon.data.video_io import write_image, write_video
from latentanon.encoders.builtin import BuiltinConfig, VideoEncoder
from latentanon.encoders.builtin_files import save_builtin
from latentanon.encoders.clips import clip_starts, snippet_starts, static_frames, video_clips
from latentanon.encoders.config import ExtractConfig
from latentanon.encoders.extraction import SET_KINDS, extract_features, finalize_store
from latentanon.errors import DataError, StoreError
from latentanon.features.store import FeatureStore, load_feature_set

SIZE = 32
COLOURS = np.array([[220, 60, 60], [60, 200, 60], [60, 90, 230]], dtype=np.float32)
SPLITS = {"train": (0, 1, 2, 3), "val": (4,), "test": (5, 6)}


def render(action: int, colour: int, big: int, frames: int, seed: int) -> np.ndarray:
    """A square of the actor's colour (private) and size (private) moving one way (the action)."""
    rng = np.random.default_rng(seed)
    video = np.full((frames, SIZE, SIZE, 3), 90, dtype=np.float32)
    side = 12 if big else 7
    velocity = [(1, 0), (-1, 0), (0, 1)][action]
    y0, x0 = rng.integers(0, SIZE - side, size=2)
    for t in range(frames):
        y = int((y0 + velocity[1] * t) % (SIZE - side))
        x = int((x0 + velocity[0] * t) % (SIZE - side))
        video[t, y : y + side, x : x + side] = COLOURS[colour]
    video += rng.normal(0, 4, video.shape)
    return np.clip(video, 0, 255).astype(np.uint8)


def actor_attributes(n: int) -> dict:
    return {"skin_tone": n % 3, "gender": (n // 3) % 2, "clothing": n % 2, "face": (n + 1) % 3}


def make_benchmark(
    root: Path, manifests: Path, sets=tuple(SET_KINDS), trimmed=24, untrimmed=40, videos_per_identity=3
) -> dict[str, pd.DataFrame]:
    """Tiny real files (mp4 / png) and validated-style manifests for the given sets."""
    out = {}
    seed = 0
    for set_name in sets:
        rows = []
        for split, identities in SPLITS.items():
            for identity in identities:
                for k in range(videos_per_identity):
                    seed += 1
                    action = k % 3
                    attrs = actor_attributes(identity)
                    video_id = f"{set_name}_p{identity}_{k}"
                    if set_name == "privacy_images":
                        frame = render(action, attrs["skin_tone"], attrs["gender"], 1, seed)[0]
                        rel = f"{set_name}/{video_id}.png"
                        write_image(root / rel, frame)
                        frames = 1
                    else:
                        frames = untrimmed if set_name in ("untrimmed", "anomaly") else trimmed
                        rel = f"{set_name}/{video_id}.mp4"
                        write_video(
                            root / rel, render(action, attrs["skin_tone"], attrs["gender"], frames, seed), fps=16
                        )
                    row = {
                        "video_id": video_id,
                        "path": rel,
                        "set": set_name,
                        "split": split,
                        "label": ["right", "left", "down"][action],
                        "label_id": action,
                        "identity": identity,
                        "frames": frames,
                        "fps": 16.0,
                        "width": SIZE,
                        "height": SIZE,
                        "checksum": hashlib.sha256((root / rel).read_bytes()).hexdigest(),
                        **attrs,
                    }
                    if set_name in ("untrimmed", "anomaly"):
                        row["segments"] = [[0.25, 1.5, row["label"]]]
                    if set_name == "anomaly":
                        row["anomaly"] = k % 2
                    rows.append(row)
        out[set_name] = pd.DataFrame(rows)
        write_manifest(out[set_name], manifests, set_name)
    return out


def make_encoder(directory: Path, dim: int = 16, seed: int = 0) -> str:
    torch.manual_seed(seed)
    encoder = VideoEncoder(BuiltinConfig(dim=dim, depth=1, heads=2, frames=16, height=SIZE, width=SIZE))
    return save_builtin(encoder, directory)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    root, manifests, encoder_dir = base / "data", base / "manifests", base / "encoder"
    frames = make_benchmark(root, manifests)
    identity = make_encoder(encoder_dir)
    return {
        "base": base,
        "root": root,
        "manifests": manifests,
        "encoder": encoder_dir,
        "frames": frames,
        "identity": identity,
    }


CFG = ExtractConfig(
    batch_size=8, num_workers=0, clips_per_video=3, static_per_video=2, videos_per_shard=4, device="cpu"
)


def test_clip_sampling():
    assert clip_starts(48, 16, 5) == [0, 8, 16, 24, 32]
    assert clip_starts(10, 16, 3) == [0, 0, 0]
    assert snippet_starts(256, 16, 16) == list(range(0, 241, 16))
    assert snippet_starts(40, 16, 16) == [0, 16]
    assert snippet_starts(8, 16, 16) == [0]
    assert static_frames(48, 4) == [6, 18, 30, 42]
    frames = np.arange(20)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3).astype(np.uint8)
    clips = video_clips(frames, ("clips", "snippets", "static"), 16, 2, 3, 16)
    assert clips["clips"].shape == (2, 16, 2, 2, 3)
    assert clips["clips"][1, :, 0, 0, 0].tolist() == list(range(4, 20))
    assert clips["snippets"].shape == (1, 16, 2, 2, 3)
    assert clips["static"].shape == (3, 16, 2, 2, 3)
    assert (clips["static"][1] == frames[10]).all()  # one frame tiled over the whole clip


def test_extract_writes_every_set_with_its_kinds(bench, tmp_path):
    store = tmp_path / "store"
    summary = extract_features(CFG, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], str(store))
    assert summary["encoder"]["identity"] == bench["identity"]
    index = finalize_store(str(store))
    assert set(index["sets"]) == set(SET_KINDS)
    stored_index = FeatureStore(str(store)).read_index()
    assert stored_index["meta"]["encoder"]["identity"] == bench["identity"]
    assert stored_index["meta"]["extract"]["clips_per_video"] == 3
    from latentanon.data.loaders import manifest_hash

    for name, kinds in SET_KINDS.items():
        fs = load_feature_set(str(store), name)
        manifest = bench["frames"][name]
        assert sorted(fs.arrays) == sorted(kinds)
        assert fs.records["video_id"].tolist() == manifest["video_id"].tolist()
        recorded = stored_index["meta"]["sets"][name]["manifest_hash"]
        assert recorded == manifest_hash(read_manifest(bench["manifests"], name))
        for kind in kinds:
            lengths = {a.shape for a in fs.kind(kind)}
            expected = {"clips": (3, 16), "static": (1 if name == "privacy_images" else 2, 16), "snippets": (2, 16)}
            assert lengths == {expected[kind]}, (name, kind)
        assert all(np.isfinite(a).all() for k in kinds for a in fs.kind(k))
    # records keep the manifest columns, segments included
    untrimmed = load_feature_set(str(store), "untrimmed")
    assert untrimmed.records["segments"].iloc[0] == [[0.25, 1.5, "right"]]
    assert {"skin_tone", "gender", "clothing", "face"} <= set(load_feature_set(str(store), "privacy_videos").records)


def test_features_match_the_encoder_and_static_clips_carry_no_motion(bench, tmp_path):
    from latentanon.data.video_io import read_video
    from latentanon.encoders.loading import load_encoder

    cfg = replace(CFG, sets=("actions",))
    extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], str(tmp_path / "s"))
    finalize_store(str(tmp_path / "s"))
    fs = load_feature_set(str(tmp_path / "s"), "actions")
    encoder = load_encoder(bench["encoder"], device="cpu")
    frames = read_video(bench["root"] / fs.records["path"].iloc[2])
    clips = video_clips(frames, ("clips", "static"), 16, 3, 2, 16)
    np.testing.assert_allclose(fs.kind("clips")[2], encoder.encode(clips["clips"]), atol=1e-5)
    np.testing.assert_allclose(fs.kind("static")[2], encoder.encode(clips["static"]), atol=1e-5)


def test_reading_the_store_never_needs_the_videos(bench, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(bench["root"], root)
    cfg = replace(CFG, sets=("actions", "privacy_images"))
    extract_features(cfg, DataConfig(), bench["manifests"], root, bench["encoder"], str(tmp_path / "s"))
    finalize_store(str(tmp_path / "s"))
    before = load_feature_set(str(tmp_path / "s"), "actions")
    shutil.rmtree(root)
    after = load_feature_set(str(tmp_path / "s"), "actions")
    assert len(after) == len(before) == len(bench["frames"]["actions"])
    for a, b in zip(before.kind("clips"), after.kind("clips")):
        np.testing.assert_array_equal(a, b)
    assert len(load_feature_set(str(tmp_path / "s"), "privacy_images")) == len(bench["frames"]["privacy_images"])


def test_workers_split_shards_and_finalize_joins_them(bench, tmp_path):
    cfg = replace(CFG, sets=("actions",))
    uri = str(tmp_path / "s")
    first = extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], uri, 0, 2)
    assert first["sets"]["actions"]["written"] == 3  # 21 videos / 4 per shard = 6 shards: 0, 2, 4
    with pytest.raises(StoreError, match="lacks shard"):
        finalize_store(uri)
    second = extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], uri, 1, 2)
    assert first["sets"]["actions"]["written"] + second["sets"]["actions"]["written"] == 6
    assert finalize_store(uri)["sets"]["actions"]["shards"] == 6
    again = extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], uri)
    assert again["sets"]["actions"]["written"] == 0 and again["sets"]["actions"]["skipped"] == 6


def test_changed_encoder_redoes_the_shards(bench, tmp_path):
    cfg = replace(CFG, sets=("actions",))
    uri = str(tmp_path / "s")
    extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], uri)
    other = tmp_path / "other_encoder"
    make_encoder(other, seed=1)
    redo = extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], other, uri)
    assert redo["sets"]["actions"]["written"] == 6
    assert finalize_store(uri)["encoder"] == redo["encoder"]["identity"]


def test_bad_arguments_are_clear_errors(bench, tmp_path):
    with pytest.raises(DataError, match="unknown sets"):
        extract_features(
            replace(CFG, sets=("nope",)),
            DataConfig(),
            bench["manifests"],
            bench["root"],
            bench["encoder"],
            str(tmp_path / "s"),
        )
    with pytest.raises(DataError, match="worker 2 of 2"):
        extract_features(
            CFG, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], str(tmp_path / "s"), 2, 2
        )
    with pytest.raises(DataError, match="manifest of set 'actions' not found"):
        extract_features(
            replace(CFG, sets=("actions",)),
            DataConfig(),
            tmp_path / "no_manifests",
            bench["root"],
            bench["encoder"],
            str(tmp_path / "s"),
        )
    with pytest.raises(StoreError, match="no extracted feature sets"):
        (tmp_path / "empty").mkdir()
        finalize_store(str(tmp_path / "empty"))


RUNNER = textwrap.dedent("""
    import sys, time
    from dataclasses import replace
    from latentanon.data.config import DataConfig
    from latentanon.encoders.base import ClipEncoder
    from latentanon.encoders.config import ExtractConfig
    from latentanon.encoders.extraction import extract_features

    import torch

    torch.set_num_threads(1)
    manifests, root, encoder_dir, uri, slow = sys.argv[1:6]
    if slow == "1":
        # slow the encoder down so the parent can kill the run between shards
        original = ClipEncoder.encode_tensor
        def slowed(self, video):
            time.sleep(0.4)
            return original(self, video)
        ClipEncoder.encode_tensor = slowed
    cfg = ExtractConfig(batch_size=8, num_workers=1, clips_per_video=3, static_per_video=2, videos_per_shard=4,
                        device="cpu", sets=("actions", "bias"))
    extract_features(cfg, DataConfig(), manifests, root, encoder_dir, uri)
    print("finished")
""")


def _run(script: Path, bench, uri: str, slow: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [
        sys.executable,
        str(script),
        str(bench["manifests"]),
        str(bench["root"]),
        str(bench["encoder"]),
        uri,
        "1" if slow else "0",
    ]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_killed_extraction_resumes_to_the_same_result(bench, tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    killed_uri, clean_uri = str(tmp_path / "killed"), str(tmp_path / "clean")
    store = FeatureStore(killed_uri)
    proc = _run(script, bench, killed_uri, slow=True)
    deadline = time.monotonic() + 120
    while not store.has_shard("actions", 0) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_at_kill = store.complete_shards("actions")
    assert done_at_kill and len(done_at_kill) < 6 and "bias" not in store.set_names()
    with pytest.raises(StoreError):
        finalize_store(killed_uri)  # an interrupted store is never indexed as complete

    resumed = _run(script, bench, killed_uri, slow=False)
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read().decode()[-2000:]
    clean = _run(script, bench, clean_uri, slow=False)
    assert clean.wait(timeout=300) == 0, clean.stdout.read().decode()[-2000:]
    finalize_store(killed_uri)
    finalize_store(clean_uri)
    for name in ("actions", "bias"):
        a, b = load_feature_set(killed_uri, name), load_feature_set(clean_uri, name)
        pd.testing.assert_frame_equal(a.records, b.records)
        for kind in SET_KINDS[name]:
            for x, y in zip(a.kind(kind), b.kind(kind)):
                assert x.tobytes() == y.tobytes()  # bitwise on the CPU
    killed_index = json.loads((tmp_path / "killed" / "index.json").read_text())
    clean_index = json.loads((tmp_path / "clean" / "index.json").read_text())
    assert killed_index == clean_index


@pytest.mark.slow
def test_extract_into_s3_matches_a_local_store(bench, tmp_path, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        boto3.session.Session().client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="features")
        cfg = replace(CFG, sets=("privacy_images", "untrimmed"))
        uri, local = "s3://features/run-1", str(tmp_path / "local")
        for target in (uri, local):
            extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], target)
            finalize_store(target)
        resumed = extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], uri)
        assert all(s["written"] == 0 for s in resumed["sets"].values())
        for name in cfg.sets:
            remote, here = load_feature_set(uri, name), load_feature_set(local, name)
            pd.testing.assert_frame_equal(remote.records, here.records)
            for kind in SET_KINDS[name]:
                for x, y in zip(remote.kind(kind), here.kind(kind)):
                    np.testing.assert_array_equal(x, y)
    finally:
        server.stop()


def test_loader_workers_give_the_same_features_as_decoding_in_process(tmp_path):
    """Two decode workers take alternate shards; each shard's clips still arrive in order."""
    root, manifests, encoder_dir = tmp_path / "data", tmp_path / "manifests", tmp_path / "encoder"
    make_benchmark(root, manifests, sets=("untrimmed",), videos_per_identity=1)
    make_encoder(encoder_dir)
    stores = {}
    for workers in (0, 2):
        cfg = ExtractConfig(
            batch_size=4,
            num_workers=workers,
            clips_per_video=2,
            static_per_video=2,
            videos_per_shard=2,
            device="cpu",
            sets=("untrimmed",),
        )
        stores[workers] = str(tmp_path / f"store{workers}")
        extract_features(cfg, DataConfig(), manifests, root, encoder_dir, stores[workers])
        finalize_store(stores[workers])
    a, b = load_feature_set(stores[0], "untrimmed"), load_feature_set(stores[2], "untrimmed")
    assert a.records["video_id"].tolist() == b.records["video_id"].tolist()
    for kind in SET_KINDS["untrimmed"]:
        for x, y in zip(a.kind(kind), b.kind(kind)):
            np.testing.assert_array_equal(x, y)


def test_static_clips_only_for_the_sets_that_ask_for_them(bench, tmp_path):
    cfg = replace(CFG, sets=("privacy_images", "untrimmed", "bias"), static_sets=("privacy_images",))
    store = str(tmp_path / "store")
    extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], store)
    index = finalize_store(store)
    assert set(index["sets"]) == set(cfg.sets)
    assert sorted(load_feature_set(store, "untrimmed").arrays) == ["snippets"]
    assert sorted(load_feature_set(store, "bias").arrays) == ["clips"]
    assert sorted(load_feature_set(store, "privacy_images").arrays) == ["static"]


def test_a_set_of_images_without_static_clips_is_refused(bench, tmp_path):
    cfg = replace(CFG, sets=("privacy_images", "bias"), static_sets=("bias",))
    with pytest.raises(DataError, match="static_sets must include \\['privacy_images'\\]"):
        extract_features(cfg, DataConfig(), bench["manifests"], bench["root"], bench["encoder"], str(tmp_path / "s"))
    with pytest.raises(DataError, match="static_sets: unknown sets \\['nope'\\]"):
        extract_features(
            replace(CFG, static_sets=("nope",)),
            DataConfig(),
            bench["manifests"],
            bench["root"],
            bench["encoder"],
            str(tmp_path / "s"),
        )
