"""Kill each resumable stage partway (SIGKILL) and check its re-run equals an uninterrupted run.

A fast test first: pretraining interrupted after a checkpoint resumes bitwise. Then the slow ones:

One uninterrupted smoke pipeline is the reference. Then, stage by stage, the stage's outputs are
deleted, the stage is started, killed as soon as it has saved partial work (its first checkpoint,
shard, trial or partial result: a marker, not a fixed delay), started again, and its outputs are
compared with the reference, timing fields aside. Finally audit_bias recomputes metrics.json,
which must equal the reference's.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from latentanon.features.shards import decode_records

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "latentanon"
TUNE_TRIALS = 3  # one more than TPE's start-up trials: the resumed trial is proposed from history


# ----------------------------------------------------------------------------- pretraining, in process


class Killed(Exception):
    pass


def test_pretraining_resumed_from_a_checkpoint_is_bitwise_an_uninterrupted_run(tmp_path, monkeypatch):
    import numpy as np
    import torch

    from latentanon.data.config import DataConfig
    from latentanon.encoders import builtin_training, pretrain
    from latentanon.encoders.config import PretrainConfig

    rng = np.random.default_rng(0)
    videos = [torch.from_numpy(rng.integers(0, 256, size=(20, 3, 32, 32), dtype=np.uint8)) for _ in range(12)]
    monkeypatch.setattr(builtin_training, "load_videos", lambda *args, **kwargs: videos)
    manifest = pd.DataFrame(
        {
            "label_id": [i % 3 for i in range(12)],
            "split": ["train"] * 10 + ["val"] * 2,
            "path": [f"{i}.mp4" for i in range(12)],
        }
    )
    cfg = PretrainConfig(
        dim=16,
        depth=1,
        heads=2,
        patch=8,
        decoder_dim=16,
        stem_width=4,
        epochs=2,
        batch_size=4,
        checkpoint_every_steps=2,
    )  # 3 steps per epoch: checkpoints mid-epoch and across
    data_cfg = DataConfig(height=32, width=32, clip_frames=16)
    weights = lambda encoder: {k: v.clone() for k, v in encoder.state_dict().items()}

    reference, reference_history, _ = builtin_training.train_builtin(cfg, data_cfg, manifest, tmp_path)
    checkpoint = tmp_path / "checkpoints" / pretrain.CHECKPOINT_FILE
    for kill_after_saves in (1, 2):  # step 2 (mid-epoch 1) and step 4 (mid-epoch 2)
        checkpoint.unlink(missing_ok=True)
        saved, save = [], builtin_training.save_training_state

        def save_then_die(path, state):
            save(path, state)
            saved.append(state["step"])
            if len(saved) == kill_after_saves:
                raise Killed

        monkeypatch.setattr(builtin_training, "save_training_state", save_then_die)
        with pytest.raises(Killed):
            builtin_training.train_builtin(cfg, data_cfg, manifest, tmp_path, checkpoint=checkpoint, fingerprint="f")
        monkeypatch.setattr(builtin_training, "save_training_state", save)
        resumed, history, info = builtin_training.train_builtin(
            cfg, data_cfg, manifest, tmp_path, checkpoint=checkpoint, fingerprint="f"
        )
        assert info["resumed_from_step"] == saved[-1] == 2 * kill_after_saves
        assert history == reference_history
        for name, tensor in weights(reference).items():
            assert torch.equal(tensor, weights(resumed)[name]), name
    # a checkpoint of other inputs (fingerprint) is not resumed
    _, _, info = builtin_training.train_builtin(
        cfg, data_cfg, manifest, tmp_path, checkpoint=checkpoint, fingerprint="g"
    )
    assert "resumed_from_step" not in info


# ----------------------------------------------------------------------------- every stage, killed


def is_timing(key: str) -> bool:
    return "seconds" in key or key in {"decided_at", "timestamp", "created_at"}


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not is_timing(k)}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def read_json(path: Path):
    return without_timing(json.loads(path.read_text()))


# Runs the given stages in order in one process, as `latentanon run` does: the reference pays the
# imports and the tracking store's set-up once. The restarts run each stage on its own.
IN_ONE_PROCESS = """
import sys
from latentanon.cli import main
for stage in sys.argv[1:]:
    status = main([stage, "--params", "params.yaml"])
    if status:
        sys.exit(f"latentanon {stage} exited {status}")
"""


def run_stages(workdir: Path, env: dict, stages: tuple[str, ...]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", IN_ONE_PROCESS, *stages], cwd=workdir, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(stages)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def run_stage(workdir: Path, env: dict, stage: str) -> None:
    proc = subprocess.run(
        [str(CLI), stage, "--params", "params.yaml"], cwd=workdir, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise AssertionError(f"latentanon {stage} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def kill_when(workdir: Path, env: dict, stage: str, marker, timeout: float = 240.0) -> float:
    """Start ``stage``, SIGKILL it once ``marker()`` is true; the seconds it ran. Fails if it finished first."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(CLI), stage, "--params", "params.yaml"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        while time.perf_counter() - started < timeout:
            if marker():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return time.perf_counter() - started
            if proc.poll() is not None:
                raise AssertionError(
                    f"{stage} finished (rc {proc.returncode}) before its kill marker:\n"
                    f"{proc.stderr.read().decode()[-3000:]}"
                )
            time.sleep(0.05)
        raise AssertionError(f"{stage}: kill marker not seen within {timeout} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()


def trials_in_state(db: Path, state: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = ?", (state,)).fetchone()[0]
    except sqlite3.Error:  # tables not created yet, or locked for a moment
        return 0


def same_tree(a: Path, b: Path, skip=()) -> list[str]:
    """Relative paths whose bytes differ between two trees (or exist in only one)."""
    files = lambda root: {p.relative_to(root) for p in root.rglob("*") if p.is_file()}
    left, right = files(a), files(b)
    diff = [str(p) for p in left ^ right]
    diff += [str(p) for p in left & right if p.name not in skip and not filecmp.cmp(a / p, b / p, shallow=False)]
    return sorted(diff)


def source_records(root: Path, rel: Path) -> pd.DataFrame:
    """A released shard's records with its opaque video ids mapped back to the source ids."""
    checksums = read_json(root / "features_anon" / rel.parent / rel.name.replace(".records.", ".checksums."))
    release_id, shard = checksums["meta"]["release_id"], int(rel.name.split("-")[1].split(".")[0])
    mapping = read_json(root / "features.release_ids" / release_id / rel.parent / f"shard-{shard:05d}.json")
    records = decode_records((root / "features_anon" / rel).read_bytes(), str(rel))
    records["video_id"] = records["video_id"].map(mapping["ids"])
    assert records["video_id"].notna().all(), f"{rel}: an opaque id the mapping lacks"
    return records


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resume")
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["paths"]["workdir"] = "."  # the smoke profile's own workdir is runs/smoke
    params["tune"]["n_trials"] = TUNE_TRIALS
    # lighter than smoke where only the amount of work changes: still several (method, seed) units
    params["evaluate"].update(seeds=[0, 1], methods=["identity", "noise"], unseen_seeds=[])
    # the paper AAM trains for epochs and checkpoints them: the train stage with something to resume
    params["train"]["method"] = "paper"
    params["tune"]["methods"] = ["paper"]
    params["audit_bias"]["seeds"] = [0]
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.pop("LATENTANON_TUNE_STORAGE", None)
    run_stages(
        workdir, env, ("generate", "validate", "pretrain-encoder", "extract", "tune", "train", "evaluate", "audit-bias")
    )
    reference = tmp_path_factory.mktemp("reference")
    for name in ("models", "features", "features.release_ids", "features_anon", "reports"):
        shutil.copytree(workdir / name, reference / name)
    return workdir, env, reference


def restart(workdir: Path, env: dict, stage: str, outputs: list[str], marker) -> None:
    for name in outputs:
        shutil.rmtree(workdir / name, ignore_errors=True)
    kill_when(workdir, env, stage, marker)
    run_stage(workdir, env, stage)


@pytest.mark.slow
def test_pretrain_encoder_resumes_from_its_checkpoint(pipeline):
    workdir, env, reference = pipeline
    checkpoint = workdir / "models/encoder/checkpoints/pretrain_state.pt"
    restart(workdir, env, "pretrain-encoder", ["models/encoder", "reports/pretrain_encoder"], checkpoint.exists)
    history = json.loads((workdir / "reports/pretrain_encoder/history.json").read_text())
    assert history["resumed_from_step"] >= 1  # it really resumed, not restarted
    assert same_tree(reference / "models/encoder", workdir / "models/encoder") == []  # bitwise, no checkpoints left
    for name in ("history.json", "probe.json"):
        resumed = read_json(workdir / "reports/pretrain_encoder" / name)
        resumed.pop("resumed_from_step", None)
        assert resumed == read_json(reference / "reports/pretrain_encoder" / name), name


@pytest.mark.slow
def test_extract_resumes_from_finished_shards(pipeline):
    workdir, env, reference = pipeline
    restart(
        workdir,
        env,
        "extract",
        ["features", "reports/extract"],
        lambda: any((workdir / "features").rglob("shard-*.safetensors")),
    )
    assert same_tree(reference / "features", workdir / "features", skip={"index.json"}) == []
    for index in (reference / "features").rglob("index.json"):
        assert read_json(workdir / index.relative_to(reference)) == read_json(index)


@pytest.mark.slow
def test_tune_resumes_the_same_study(pipeline):
    workdir, env, reference = pipeline
    db = workdir / "reports/tune/study.db"
    restart(
        workdir,
        env,
        "tune",
        ["reports/tune"],
        lambda: trials_in_state(db, "COMPLETE") >= 1 and trials_in_state(db, "RUNNING") >= 1,
    )
    assert trials_in_state(db, "FAIL") == 1 and trials_in_state(db, "RUNNING") == 0
    for name in ("chosen.json", "pareto.json"):
        assert read_json(workdir / "reports/tune" / name) == read_json(reference / "reports/tune" / name), name
    complete = lambda root: (
        pd.read_csv(root / "reports/tune/trials.csv")
        .query("state == 'COMPLETE'")
        .drop(columns="optuna_trial")
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(complete(workdir), complete(reference))


@pytest.mark.slow
def test_train_resumes_from_its_checkpoint(pipeline):
    workdir, env, reference = pipeline
    restart(
        workdir,
        env,
        "train",
        ["models/method", "features_anon", "reports/train"],
        (workdir / "models/method/checkpoints/last.pt").exists,
    )
    assert (workdir / "models/method/method.safetensors").exists()
    for name in ("method.safetensors", "heads.safetensors"):
        assert filecmp.cmp(reference / "models/method" / name, workdir / "models/method" / name, shallow=False), name
    resumed, uninterrupted = (read_json(root / "models/method/method.json") for root in (workdir, reference))
    for meta in (resumed, uninterrupted):
        meta["info"].pop("features_uri", None)
    assert resumed == uninterrupted
    # each publish draws fresh opaque ids (and a release id): the features are byte for byte the
    # same, and the records are once each release's ids are mapped back through its own mapping
    release_files = {"index.json", "PUBLISH_STATUS.json"}
    skip = release_files | {p.name for p in (reference / "features_anon").rglob("shard-*.*.json")}
    assert same_tree(reference / "features_anon", workdir / "features_anon", skip=skip) == []
    for records in sorted((reference / "features_anon").rglob("shard-*.records.json")):
        rel = records.relative_to(reference / "features_anon")
        resumed_records, reference_records = (source_records(root, rel) for root in (workdir, reference))
        pd.testing.assert_frame_equal(resumed_records, reference_records, obj=str(rel))


@pytest.mark.slow
def test_evaluate_resumes_from_partial_results_and_metrics_are_unchanged(pipeline):
    workdir, env, reference = pipeline
    restart(workdir, env, "evaluate", ["reports/evaluate"], (workdir / "reports/evaluate/partial.json").exists)
    assert read_json(workdir / "reports/evaluate/evaluation.json") == read_json(
        reference / "reports/evaluate/evaluation.json"
    )
    run_stage(workdir, env, "audit-bias")
    assert read_json(workdir / "reports/metrics.json") == read_json(reference / "reports/metrics.json")
