"""Generation of the synthetic benchmark on a tiny config: layouts, determinism, resumption."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from latentanon.data import layouts
from latentanon.data.actions import ACTIONS, PAIRS, REVERSED, action_pose
from latentanon.data.actors import FACES, Outfit, make_identity
from latentanon.data.cast import make_cast
from latentanon.data.config import DataConfig
from latentanon.data.job_frames import job_scene, render_job
from latentanon.data.jobs import Job
from latentanon.data.synthetic import NEUTRAL_AT_ONE, _config_stamp, generate_benchmark, plan_benchmark
from latentanon.data.video_io import read_image, read_video, scan_video, write_image, write_video
from latentanon.errors import DataError

TINY = DataConfig(
    n_identities_train=2,
    n_identities_val=1,
    n_identities_test=1,
    n_identities_pretrain=3,
    pretrain_videos_per_class=1,
    trimmed_frames=16,
    untrimmed_frames=64,
    privacy_images_per_identity=1,
    privacy_videos_per_identity=1,
    anomaly_videos_per_identity=2,
    height=32,
    width=32,
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    summary = generate_benchmark(TINY, base / "data", base / "reports")
    return base, summary


def test_every_layout_is_written(generated):
    base, summary = generated
    root = base / "data"
    expected = {
        "pretrain/annotations/train.csv",
        "pretrain/annotations/validate.csv",
        "actions/ucfTrainTestlist/classInd.txt",
        "actions/ucfTrainTestlist/trainlist01.txt",
        "actions/ucfTrainTestlist/testlist01.txt",
        f"privacy_videos/testTrainMulti_7030_splits/{ACTIONS[0]}_test_split1.txt",
        f"privacy_videos/PrivacyAttributes/{ACTIONS[0]}.json",
        f"untrimmed/annotation/validation/{ACTIONS[0]}_val.txt",
        f"untrimmed/annotation/test/{ACTIONS[0]}_test.txt",
        "anomaly/Anomaly_Train.txt",
        "anomaly/Anomaly_Test.txt",
        "anomaly/Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
        f"bias/{layouts.SUBJECTS_FILE}",
        layouts.CLASSES_FILE,
    }
    for rel in expected:
        assert (root / rel).is_file(), rel
    n_people = 4
    assert summary["videos"] == {
        "pretrain": len(ACTIONS),
        "actions": n_people * len(ACTIONS),
        "privacy_videos": n_people,
        "privacy_images": n_people,
        "untrimmed": n_people,
        "anomaly": 2 * n_people,
        "bias": n_people * len(ACTIONS),
    }
    videos = [p for p in root.rglob("*.mp4")]
    assert len(videos) == sum(summary["videos"].values()) - summary["videos"]["privacy_images"]
    assert len(list((root / "privacy_images" / "images").rglob("*.png"))) == n_people
    classes = json.loads((root / layouts.CLASSES_FILE).read_text())
    assert classes["actions"] == list(ACTIONS) and len(ACTIONS) >= 10
    assert [tuple(p) for p in classes["pairs"]] == list(PAIRS)


def test_files_decode_with_configured_size(generated):
    base, _ = generated
    root = base / "data"
    video = read_video(next((root / "actions" / "UCF101").rglob("*.mp4")))
    assert video.shape == (TINY.trimmed_frames, TINY.height, TINY.width, 3)
    long_video = read_video(next((root / "untrimmed" / "videos").rglob("*.mp4")))
    assert long_video.shape[0] == TINY.untrimmed_frames
    image = read_image(next((root / "privacy_images" / "images").rglob("*.png")))
    assert image.shape == (TINY.height, TINY.width, 3)


def test_contact_sheets_and_summary(generated):
    base, summary = generated
    reports = base / "reports"
    for set_name in layouts.SETS:
        sheet = reports / f"contact_{set_name}.png"
        assert sheet.is_file() and read_image(sheet).shape[0] > 100
    on_disk = json.loads((reports / "summary.json").read_text())
    assert on_disk["videos"] == summary["videos"] and summary["seconds"] > 0 and summary["bytes"] > 0


def test_rerun_resumes_without_rewriting(generated):
    base, _ = generated
    root = base / "data"
    some = next((root / "bias").rglob("*.mp4"))
    before = some.stat().st_mtime_ns
    # an interrupted run: one video lost; the re-run renders only that one
    lost = next((root / "actions").rglob("*.mp4"))
    lost.unlink()
    again = generate_benchmark(TINY, root, base / "reports")
    assert again["rendered"] == 1 and again["skipped_existing"] == sum(again["videos"].values()) - 1
    assert some.stat().st_mtime_ns == before and lost.exists()


def test_other_settings_refuse_the_same_root(generated, tmp_path):
    base, _ = generated
    with pytest.raises(DataError, match="other data settings"):
        generate_benchmark(replace(TINY, seed=5), base / "data", tmp_path)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        generate_benchmark(TINY, tmp_path / "foreign", tmp_path / "r")


def test_generation_is_deterministic_in_the_seed():
    jobs_a, files_a = plan_benchmark(TINY)
    jobs_b, files_b = plan_benchmark(TINY)
    assert files_a == files_b and [j.path for j in jobs_a] == [j.path for j in jobs_b]
    assert np.array_equal(render_job(jobs_a[5], TINY), render_job(jobs_b[5], TINY))
    jobs_c, files_c = plan_benchmark(replace(TINY, seed=1))
    assert files_c != files_a
    assert not np.array_equal(render_job(jobs_c[5], replace(TINY, seed=1)), render_job(jobs_a[5], TINY))


def test_identities_are_disjoint_across_splits_and_pretraining():
    cast = make_cast(TINY)
    ids = {k: {p.identity for p in v} for k, v in cast.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    pretrain = ids["pretrain_train"] | ids["pretrain_val"]
    assert not pretrain & (ids["train"] | ids["val"] | ids["test"])
    jobs, _ = plan_benchmark(TINY)
    for job in jobs:
        pool = ids[f"pretrain_{job.split}"] if job.set_name == "pretrain" else ids[job.split]
        assert job.person.identity in pool


def test_reversed_pairs_are_exact_time_reversals():
    person = make_identity(1, 0, 0, np.random.default_rng(0))
    t = np.arange(48, dtype=np.float32) / 16
    for reversed_name, forward_name in REVERSED.items():
        back, _ = action_pose(reversed_name, t, person, np.random.default_rng(4))
        fwd, _ = action_pose(forward_name, t, person, np.random.default_rng(4))
        assert np.allclose(back, fwd[::-1])
        assert not np.allclose(back, fwd)


def test_bad_config_is_rejected(tmp_path):
    with pytest.raises(DataError, match="identities"):
        generate_benchmark(replace(TINY, n_identities_test=0), tmp_path / "d", tmp_path / "r")
    with pytest.raises(DataError, match="even"):
        plan_benchmark(replace(TINY, height=31))
    with pytest.raises(DataError, match="scenes"):
        plan_benchmark(replace(TINY, scenes=-1))


def test_videos_share_a_pool_of_scenes_when_asked():
    jobs, _ = plan_benchmark(TINY)

    def scenes(cfg):
        return [job_scene(cfg, np.random.default_rng(list(job.seed))) for job in jobs]

    own = scenes(replace(TINY, scenes=0))
    assert len(set(own)) == len(jobs)  # 0: every video its own background
    pooled = scenes(replace(TINY, scenes=3))
    assert len(set(pooled)) == 3
    assert set(scenes(replace(TINY, scenes=3, seed=0))) == set(pooled)
    assert not set(scenes(replace(TINY, scenes=3, seed=1))) & set(pooled)
    # the pool changes only the background: a pooled video still renders deterministically
    assert np.array_equal(render_job(jobs[2], replace(TINY, scenes=3)), render_job(jobs[2], replace(TINY, scenes=3)))


def test_default_benchmark_has_the_power_the_evaluation_needs():
    """Re-identification and gait are scored among >= 48 test people; images are many and single frames."""
    cfg = DataConfig()
    jobs, _ = plan_benchmark(cfg)
    test_people = {j.person.identity for j in jobs if j.split == "test" and j.set_name == "privacy_videos"}
    assert len(test_people) == cfg.n_identities_test >= 48
    images = [j for j in jobs if j.set_name == "privacy_images"]
    assert sum(j.split == "test" for j in images) == cfg.privacy_images_per_identity * cfg.n_identities_test >= 480
    image = render_job(images[0], cfg)
    assert image.shape == (cfg.height, cfg.width, 3)


def test_test_multipliers_add_test_videos_and_leave_train_and_val_as_they_were():
    """More test videos of the utility sets (bench_power.py) without touching what is trained on."""
    base_jobs, base_files = plan_benchmark(TINY)
    more = replace(TINY, test_actions_multiplier=3, test_untrimmed_multiplier=4, test_anomaly_multiplier=2)
    jobs, files = plan_benchmark(more)

    def count(plan, set_name, split):
        return sum(j.set_name == set_name and j.split == split for j in plan)

    for set_name, factor in (("actions", 3), ("untrimmed", 4), ("anomaly", 2)):
        assert count(jobs, set_name, "test") == factor * count(base_jobs, set_name, "test") > 0

    def described(plan, keep):
        return [(j.set_name, j.path, j.seed, j.person, j.outfit, j.timeline) for j in plan if keep(j)]

    # the other sets are the same jobs; train and val of every set are the same jobs
    def other_sets(j):
        return j.set_name not in ("actions", "untrimmed", "anomaly")

    assert described(jobs, other_sets) == described(base_jobs, other_sets) != []
    assert described(jobs, lambda j: j.split != "test") == described(base_jobs, lambda j: j.split != "test")
    # every annotation file that names no test video is unchanged (train lists, val annotations)
    names_test = ("test", "Test", layouts.SIDECAR_FILE)
    fit_files = [k for k in base_files if not any(t in k.rsplit("/", 1)[-1] for t in names_test)]
    assert {
        layouts.SET_DIRS["actions"] + "/ucfTrainTestlist/trainlist01.txt",
        layouts.SET_DIRS["anomaly"] + "/Anomaly_Train.txt",
    } <= set(fit_files)
    assert {k: files[k] for k in fit_files} == {k: base_files[k] for k in fit_files}
    assert len(files[layouts.SET_DIRS["actions"] + "/ucfTrainTestlist/testlist01.txt"].splitlines()) == count(
        jobs, "actions", "test"
    )
    with pytest.raises(DataError, match="multiplier"):
        plan_benchmark(replace(TINY, test_untrimmed_multiplier=0))
    # at 1 they are not in the generation stamp (a benchmark from before them is still the same one)
    assert not set(NEUTRAL_AT_ONE) & set(_config_stamp(TINY)["config"])
    assert _config_stamp(DataConfig())["config_hash"] == "44fbb84f8a31b564"  # the stamp from before them
    assert _config_stamp(more)["config_hash"] != _config_stamp(TINY)["config_hash"]


def test_faces_are_drawn_apart_at_the_default_size():
    """The three face states differ in the head region only, by more than a few pixels' worth."""
    cfg = DataConfig()
    person = make_cast(cfg)["test"][0]
    heads = []
    for face in range(len(FACES)):
        job = Job(
            "probe",
            "probe.png",
            "image",
            person,
            Outfit(clothing=0, face=face, trousers=0),
            "test",
            cfg.clip_frames,
            (0, 1, 2),
            action=ACTIONS[0],
        )
        heads.append(render_job(job, cfg).astype(np.float32))
    for a in range(len(FACES)):
        for b in range(a + 1, len(FACES)):
            changed = np.abs(heads[a] - heads[b]).max(axis=-1) > 40
            assert changed.sum() >= 8, (FACES[a], FACES[b], int(changed.sum()))


def test_image_round_trip_and_bad_image(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", image)
    assert np.array_equal(read_image(tmp_path / "a.png"), image)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="uint8"):
        write_image(tmp_path / "c.png", image.astype(np.float32))


def test_video_readers_name_the_file_they_cannot_read(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    good = tmp_path / "good.mp4"
    write_video(good, frames, fps=16, codec="libx264")
    assert read_video(good).shape == (16, 32, 32, 3)
    assert scan_video(good) == {"frames": 16, "fps": 16.0, "height": 32, "width": 32}
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(good.read_bytes()[:200])
    for reader in (read_video, scan_video):
        with pytest.raises(DataError, match="broken.mp4"):
            reader(broken)
        with pytest.raises(DataError, match="missing.mp4: video file not found"):
            reader(tmp_path / "missing.mp4")
