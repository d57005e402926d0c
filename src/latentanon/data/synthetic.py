"""The synthetic privacy-video benchmark, written as real files in the real datasets' layouts.

generate_benchmark plans every video from cfg.seed (who, what, where, which split), writes the
annotation files of each layout, then renders the videos (skipping those already written, so an
interrupted run resumes), and finally draws a contact sheet per set. docs/datasets.md documents
the layouts and the split rule.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import multiprocessing as mp
import string
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
from tqdm import tqdm

from latentanon._files import write_text_atomic
from latentanon.data import layouts
from latentanon.data.actions import (
    ACTIONS,
    ANOMALIES,
    PAIRS,
    TRANSITIONS,
    action_pose,
    fall_pose,
    fight_pose,
    idle_pose,
    join,
    talk_pose,
)
from latentanon.data.actors import ATTRIBUTES, Identity, Outfit, Placement, draw_actor, make_identity, random_outfit
from latentanon.data.config import TEST_MULTIPLIERS, DataConfig
from latentanon.data.contact import write_contact_sheets
from latentanon.data.render import Scene, finish, random_scene, render_scene
from latentanon.data.video_io import write_image, write_video
from latentanon.errors import DataError

SPLITS = ("train", "val", "test")
ANOMALY_CLASSES = ("Normal",) + ANOMALIES
GENERATOR_VERSION = "latentanon.synthetic/3"  # bump when the same settings would give other files
PRETRAIN_IDENTITY_BASE = 1000  # pretraining identities never meet the other sets' identities


@dataclass
class Job:
    """One file to render: everything needed is planned up front so annotations come first."""

    set_name: str
    path: str  # relative to the data root
    kind: str  # trimmed | timeline | image
    person: Identity
    outfit: Outfit
    split: str
    n_frames: int
    seed: tuple[int, ...]
    action: str = ""
    timeline: list = field(default_factory=list)  # [(start_frame, end_frame, what)] for long videos
    partner: Identity | None = None  # second person in two-person scenes


# ----------------------------------------------------------------------------- cast


def _balanced_people(ids: list[int], rng: np.random.Generator) -> list[Identity]:
    """Identities whose (gender, skin tone) combinations are as balanced as the count allows."""
    combos = [(g, s) for g in range(len(ATTRIBUTES["gender"])) for s in range(len(ATTRIBUTES["skin_tone"]))]
    order = rng.permutation(len(combos))
    people = []
    for k, identity in enumerate(ids):
        if k % len(combos) == 0 and k:
            order = rng.permutation(len(combos))
        gender, skin = combos[order[k % len(combos)]]
        people.append(make_identity(identity, skin, gender, rng))
    return people


def make_cast(cfg: DataConfig) -> dict[str, list[Identity]]:
    """Identities per split (ids 1..N: train, then val, then test) and the pretraining pool."""
    rng = np.random.default_rng([cfg.seed, 7])
    counts = {"train": cfg.n_identities_train, "val": cfg.n_identities_val, "test": cfg.n_identities_test}
    cast, start = {}, 1
    for split in SPLITS:
        cast[split] = _balanced_people(list(range(start, start + counts[split])), rng)
        start += counts[split]
    n_pre = cfg.n_identities_pretrain
    n_pre_val = max(1, round(n_pre * layouts.val_fraction(cfg.n_identities_train, cfg.n_identities_val)))
    pre_ids = list(range(PRETRAIN_IDENTITY_BASE + 1, PRETRAIN_IDENTITY_BASE + n_pre + 1))
    people = _balanced_people(pre_ids, rng)
    cast["pretrain_train"], cast["pretrain_val"] = people[: n_pre - n_pre_val], people[n_pre - n_pre_val :]
    return cast


def _check_config(cfg: DataConfig) -> None:
    problems = []
    if min(cfg.n_identities_train, cfg.n_identities_val, cfg.n_identities_test) < 1:
        problems.append("n_identities_train/val/test must each be >= 1")
    if cfg.n_identities_train + cfg.n_identities_val + cfg.n_identities_test > 99:
        problems.append("at most 99 identities (UCF101 group ids have two digits)")
    if min(getattr(cfg, name) for name in TEST_MULTIPLIERS) < 1:
        problems.append(f"{', '.join(TEST_MULTIPLIERS)} must each be >= 1")
    if cfg.n_identities_pretrain < 2:
        problems.append("n_identities_pretrain must be >= 2")
    if cfg.height < 16 or cfg.width < 16 or cfg.height % 2 or cfg.width % 2:
        problems.append("height and width must be even and >= 16")
    if cfg.trimmed_frames < cfg.clip_frames or cfg.untrimmed_frames < 4 * cfg.clip_frames:
        problems.append("trimmed_frames >= clip_frames and untrimmed_frames >= 4 * clip_frames")
    if cfg.fps < 1:
        problems.append("fps must be >= 1")
    if cfg.workers < 1:
        problems.append("workers must be >= 1")
    if cfg.scenes < 0:
        problems.append("scenes must be >= 0 (0: a new scene per video)")
    if problems:
        raise DataError("data config: " + "; ".join(problems))


# ----------------------------------------------------------------------------- planning per layout


def _official(split: str) -> str:
    """The real dataset's split a synthetic split sits in: val identities are part of train."""
    return "test" if split == "test" else "train"


def _sidecar(rows: list[tuple[str, Job]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(layouts.SIDECAR_COLUMNS)
    for rel, job in rows:
        p, o = job.person, job.outfit
        writer.writerow([rel, p.identity, p.skin_tone, p.gender, o.clothing, o.face])
    return buf.getvalue()


def _youtube_id(rng: np.random.Generator) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(alphabet[i] for i in rng.integers(len(alphabet), size=11))


def plan_pretrain(cfg: DataConfig, cast, rng) -> tuple[list[Job], dict[str, str]]:
    base = layouts.SET_DIRS["pretrain"]
    jobs: list[Job] = []
    rows: dict[str, list[tuple[str, str, int, int, str, str, Job]]] = {"train": [], "val": []}
    people = {"train": cast["pretrain_train"], "val": cast["pretrain_val"]}
    share = len(people["val"]) / (len(people["train"]) + len(people["val"]))
    count = 0
    for label in ACTIONS:
        for _ in range(cfg.pretrain_videos_per_class):
            # spread validation videos evenly over the classes, `share` of them in all
            split = "val" if int((count + 1) * share) > int(count * share) else "train"
            count += 1
            pool = people[split]
            person = pool[int(rng.integers(len(pool)))]
            start = int(rng.integers(0, 600))
            yid = _youtube_id(rng)
            rel = f"{split}/{label}/{yid}_{start:06d}_{start + 10:06d}.mp4"
            jobs.append(
                Job(
                    "pretrain",
                    f"{base}/{rel}",
                    "trimmed",
                    person,
                    random_outfit(rng),
                    split,
                    cfg.trimmed_frames,
                    (),
                    action=label,
                )
            )
            rows[split].append((label, yid, start, start + 10, split, rel, jobs[-1]))
    files = {}
    for split, name in (("train", "train.csv"), ("val", "validate.csv")):
        lines = ["label,youtube_id,time_start,time_end,split"]
        lines += [f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]}" for r in rows[split]]
        files[f"{base}/annotations/{name}"] = "\n".join(lines) + "\n"
    files[f"{base}/{layouts.SIDECAR_FILE}"] = _sidecar([(r[5], r[6]) for s in rows for r in rows[s]])
    return jobs, files


def _videos_per_identity(count: int, split: str, test_multiplier: int) -> int:
    """Videos per identity in ``split``: the test split holds ``test_multiplier`` times as many.
    Test comes last in every planner, so train and val stay the same videos whatever the multiplier."""
    return count * test_multiplier if split == "test" else count


def _labelled_people(cast):
    for split in SPLITS:
        for person in cast[split]:
            yield split, person


def plan_actions(cfg: DataConfig, cast, rng) -> tuple[list[Job], dict[str, str]]:
    base = layouts.SET_DIRS["actions"]
    jobs, side, train, test = [], [], [], []
    for split, person in _labelled_people(cast):
        for label in ACTIONS:
            per_class = _videos_per_identity(cfg.actions_videos_per_identity_class, split, cfg.test_actions_multiplier)
            for c in range(per_class):
                name = f"v_{label}_g{person.identity:02d}_c{c + 1:02d}"
                rel = f"UCF101/{label}/{name}.mp4"
                jobs.append(
                    Job(
                        "actions",
                        f"{base}/{rel}",
                        "trimmed",
                        person,
                        random_outfit(rng),
                        split,
                        cfg.trimmed_frames,
                        (),
                        action=label,
                    )
                )
                side.append((rel, jobs[-1]))
                entry = f"{label}/{name}.mp4"
                (test.append(entry) if split == "test" else train.append(f"{entry} {ACTIONS.index(label) + 1}"))
    files = {
        f"{base}/ucfTrainTestlist/classInd.txt": "".join(f"{i + 1} {c}\n" for i, c in enumerate(ACTIONS)),
        f"{base}/ucfTrainTestlist/trainlist01.txt": "".join(f"{line}\n" for line in train),
        f"{base}/ucfTrainTestlist/testlist01.txt": "".join(f"{line}\n" for line in test),
        f"{base}/{layouts.SIDECAR_FILE}": _sidecar(side),
    }
    return jobs, files


def _pa_hmdb_entry(job: Job) -> dict:
    """PA-HMDB51 attribute spans [first_frame, last_frame, value]; 0 means "cannot tell" there,
    except for face where 0 = none, 1 = partial, 2 = complete."""
    last = job.n_frames - 1
    p, o = job.person, job.outfit
    return {
        "face": [[0, last, o.face]],
        "gender": [[0, last, p.gender + 1]],
        "skin_color": [[0, last, p.skin_tone + 1]],
        "clothing": [[0, last, o.clothing + 1]],
        "nudity": [[0, last, 0]],
        "relationship": [[0, last, 0]],
        "review": True,
    }


def plan_privacy_videos(cfg: DataConfig, cast, rng) -> tuple[list[Job], dict[str, str]]:
    base = layouts.SET_DIRS["privacy_videos"]
    jobs, side = [], []
    splits: dict[str, list[str]] = {c: [] for c in ACTIONS}
    attrs: dict[str, dict[str, dict]] = {c: {} for c in ACTIONS}
    for split, person in _labelled_people(cast):
        for k in range(cfg.privacy_videos_per_identity):
            label = ACTIONS[int(rng.integers(len(ACTIONS)))]
            name = f"Person{person.identity:03d}_{label}_u_nm_np1_fr_med_{k}"
            rel = f"hmdb51/{label}/{name}.mp4"
            job = Job(
                "privacy_videos",
                f"{base}/{rel}",
                "trimmed",
                person,
                random_outfit(rng),
                split,
                cfg.trimmed_frames,
                (),
                action=label,
            )
            jobs.append(job)
            side.append((rel, job))
            splits[label].append(f"{name}.mp4 {2 if split == 'test' else 1}")
            attrs[label][f"{name}.mp4"] = _pa_hmdb_entry(job)
    files = {f"{base}/{layouts.SIDECAR_FILE}": _sidecar(side)}
    for label in ACTIONS:
        files[f"{base}/testTrainMulti_7030_splits/{label}_test_split1.txt"] = "".join(f"{x}\n" for x in splits[label])
        files[f"{base}/PrivacyAttributes/{label}.json"] = json.dumps(attrs[label], indent=1) + "\n"
    return jobs, files


VISPR_FACE = {"complete": "a9_face_complete", "partial": "a10_face_partial"}


def plan_privacy_images(cfg: DataConfig, cast, rng) -> tuple[list[Job], dict[str, str]]:
    base = layouts.SET_DIRS["privacy_images"]
    folder = {"train": "train2017", "val": "val2017", "test": "test2017"}
    jobs, side, files = [], [], {}
    for split, person in _labelled_people(cast):
        for _k in range(cfg.privacy_images_per_identity):
            image_id = f"2017_{int(rng.integers(10**7, 10**8)):08d}"
            rel = f"images/{folder[split]}/{image_id}.png"
            action = ACTIONS[int(rng.integers(len(ACTIONS)))]
            job = Job(
                "privacy_images",
                f"{base}/{rel}",
                "image",
                person,
                random_outfit(rng),
                split,
                cfg.clip_frames,
                (),
                action=action,
            )
            jobs.append(job)
            side.append((rel, job))
            face = ATTRIBUTES["face"][job.outfit.face]
            labels = [VISPR_FACE[face]] if face in VISPR_FACE else []
            labels += [f"skin_tone_{person.skin_tone}", f"gender_{person.gender}", f"clothing_{job.outfit.clothing}"]
            note = {"id": image_id, "image_path": rel, "labels": labels}
            files[f"{base}/annotations/{folder[split]}/{image_id}.json"] = json.dumps(note) + "\n"
    files[f"{base}/{layouts.SIDECAR_FILE}"] = _sidecar(side)
    return jobs, files


def _untrimmed_timeline(cfg: DataConfig, rng: np.random.Generator) -> list[tuple[int, int, str]]:
    """Idle gaps and action instances; postures chain (a SitDown is followed by a StandUp)."""
    fps, total = cfg.fps, cfg.untrimmed_frames
    timeline: list[tuple[int, int, str]] = []
    cursor, state = 0, "stand"
    while True:
        gap = int(rng.uniform(0.6, 1.6) * fps)
        length = int(rng.uniform(1.8, 3.2) * fps)
        if not timeline:
            # every video holds at least one instance, shortened to fit a short video
            gap = min(gap, total // 5)
            length = min(length, total - gap - total // 5)
        elif cursor + gap + length + fps // 2 > total:
            break
        timeline.append((cursor, cursor + gap, f"idle:{state}"))
        cursor += gap
        allowed = [a for a in ACTIONS if TRANSITIONS.get(a, ("stand",))[0] == state]
        action = allowed[int(rng.integers(len(allowed)))]
        timeline.append((cursor, cursor + length, action))
        state = TRANSITIONS.get(action, (state, state))[1]
        cursor += length
    timeline.append((cursor, total, f"idle:{state}"))
    return timeline


def plan_untrimmed(cfg: DataConfig, cast, rng) -> tuple[list[Job], dict[str, str]]:
    base = layouts.SET_DIRS["untrimmed"]
    jobs, side = [], []
    notes: dict[tuple[str, str], list[str]] = {(part, c): [] for part in ("validation", "test") for c in ACTIONS}
    counters = {"validation": 0, "test": 0}
    for split, person in _labelled_people(cast):
        for _ in range(_videos_per_identity(cfg.untrimmed_videos_per_identity, split, cfg.test_untrimmed_multiplier)):
            folder = "test" if split == "test" else "validation"
            counters[folder] += 1
            name = f"video_{folder}_{counters[folder]:07d}"
            rel = f"videos/{folder}/{name}.mp4"
            timeline = _untrimmed_timeline(cfg, rng)
            job = Job(
                "untrimmed",
                f"{base}/{rel}",
                "timeline",
                person,
                random_outfit(rng),
                split,
                cfg.untrimmed_frames,
                (),
                timeline=timeline,
            )
            jobs.append(job)
            side.append((rel, job))
            for start, end, what in timeline:
                if not what.startswith("idle:"):
                    notes[(folder, what)].append(f"{name} {start / cfg.fps:.2f} {end / cfg.fps:.2f}")
    files = {f"{base}/{layouts.SIDECAR_FILE}": _sidecar(side)}
    for (folder, label), lines in notes.items():
        tag = "val" if folder == "validation" else "test"
        files[f"{base}/annotation/{folder}/{label}_{tag}.txt"] = "".join(f"{x}\n" for x in lines)
    return jobs, files


def _anomaly_timeline(event: str, cfg: DataConfig, rng) -> tuple[list[tuple[int, int, str]], tuple[int, int]]:
    total = cfg.untrimmed_frames
    if event == "Normal":
        return [(0, total, rng.choice(["normal:walk", "normal:talk", "normal:idle"]))], (-1, -1)
    start = int(rng.uniform(0.25, 0.55) * total)
    end = total if event == "Falling" else min(total - cfg.fps // 2, start + int(rng.uniform(2.0, 4.0) * cfg.fps))
    before = {"Falling": "normal:idle", "Fighting": "normal:talk", "Running": "normal:walk"}[event]
    timeline = [(0, start, before), (start, end, f"event:{event}")]
    if end < total:
        timeline.append((end, total, before))
    return timeline, (start, end)


def plan_anomaly(cfg: DataConfig, cast, rng) -> tuple[list[Job], dict[str, str]]:
    base = layouts.SET_DIRS["anomaly"]
    jobs, side = [], []
    train_list: list[str] = []
    test_list: list[str] = []
    test_notes: list[str] = []
    train_notes: list[str] = []
    counters: dict[str, int] = {}
    n_events = 0
    for split, person in _labelled_people(cast):
        pool = cast[split]
        for k in range(_videos_per_identity(cfg.anomaly_videos_per_identity, split, cfg.test_anomaly_multiplier)):
            anomalous = (person.identity + k) % 2 == 0
            event = ANOMALIES[n_events % len(ANOMALIES)] if anomalous else "Normal"
            n_events += anomalous
            # anomalous videos of both splits share one class folder; normal ones have two folders
            key = f"{event}:{split == 'test'}" if event == "Normal" else event
            counters[key] = counters.get(key, 0) + 1
            n = counters[key]
            if event == "Normal":
                folder = "Testing_Normal_Videos_Anomaly" if split == "test" else "Training_Normal_Videos_Anomaly"
                name = f"Normal_Videos_{n:03d}_x264.mp4" if split == "test" else f"Normal_Videos{n:03d}_x264.mp4"
                rel, entry = f"{folder}/{name}", f"{folder}/{name}"
            else:
                name = f"{event}{n:03d}_x264.mp4"
                rel, entry = f"Anomaly-Videos/{event}/{name}", f"{event}/{name}"
            timeline, (start, end) = _anomaly_timeline(event, cfg, rng)
            partner = None
            if any(what.endswith(":talk") or what.endswith("Fighting") for _, _, what in timeline) and len(pool) > 1:
                others = [p for p in pool if p.identity != person.identity]
                partner = others[int(rng.integers(len(others)))]
            job = Job(
                "anomaly",
                f"{base}/{rel}",
                "timeline",
                person,
                random_outfit(rng),
                split,
                cfg.untrimmed_frames,
                (),
                action=event,
                timeline=timeline,
                partner=partner,
            )
            jobs.append(job)
            side.append((rel, job))
            # UCF-Crime frame intervals are inclusive: the last anomalous frame is end - 1
            note = f"{name}  {event}  {start}  {end - 1 if end > 0 else -1}  -1  -1"
            (test_list if split == "test" else train_list).append(entry)
            (test_notes if split == "test" else train_notes).append(note)
    files = {
        f"{base}/Anomaly_Train.txt": "".join(f"{x}\n" for x in train_list),
        f"{base}/Anomaly_Test.txt": "".join(f"{x}\n" for x in test_list),
        f"{base}/Temporal_Anomaly_Annotation_for_Testing_Videos.txt": "".join(f"{x}\n" for x in test_notes),
        f"{base}/{layouts.TEMPORAL_TRAIN_FILE}": "".join(f"{x}\n" for x in train_notes),
        f"{base}/{layouts.SIDECAR_FILE}": _sidecar(side),
    }
    return jobs, files


def plan_bias(cfg: DataConfig, cast, rng) -> tuple[list[Job], dict[str, str]]:
    base = layouts.SET_DIRS["bias"]
    jobs, side, subjects, train_subjects = [], [], [], []
    for split, person in _labelled_people(cast):
        subjects.append(f"{person.identity},{person.gender}")
        if split != "test":
            train_subjects.append(str(person.identity))
        for a, label in enumerate(ACTIONS):
            for r in range(cfg.bias_videos_per_identity_class):
                camera = int(rng.integers(1, 4))
                name = f"S001C{camera:03d}P{person.identity:03d}R{r + 1:03d}A{a + 1:03d}_rgb.mp4"
                rel = f"nturgb+d_rgb/{name}"
                jobs.append(
                    Job(
                        "bias",
                        f"{base}/{rel}",
                        "trimmed",
                        person,
                        random_outfit(rng),
                        split,
                        cfg.trimmed_frames,
                        (),
                        action=label,
                    )
                )
                side.append((rel, jobs[-1]))
    files = {
        f"{base}/{layouts.SUBJECTS_FILE}": "subject,gender\n" + "".join(f"{x}\n" for x in subjects),
        f"{base}/{layouts.CROSS_SUBJECT_FILE}": "".join(f"{x}\n" for x in train_subjects),
        f"{base}/{layouts.SIDECAR_FILE}": _sidecar(side),
    }
    return jobs, files


PLANNERS = {
    "pretrain": plan_pretrain,
    "actions": plan_actions,
    "privacy_videos": plan_privacy_videos,
    "privacy_images": plan_privacy_images,
    "untrimmed": plan_untrimmed,
    "anomaly": plan_anomaly,
    "bias": plan_bias,
}


def plan_benchmark(cfg: DataConfig) -> tuple[list[Job], dict[str, str]]:
    """Every job and annotation file, deterministically from cfg.seed."""
    _check_config(cfg)
    cast = make_cast(cfg)
    jobs, files = [], {}
    for index, set_name in enumerate(layouts.SETS):
        set_jobs, set_files = PLANNERS[set_name](cfg, cast, np.random.default_rng([cfg.seed, index, 1]))
        for k, job in enumerate(set_jobs):
            job.seed = (cfg.seed, index, 2, k)
        jobs += set_jobs
        files.update(set_files)
    files[layouts.CLASSES_FILE] = json.dumps(class_lists(), indent=2) + "\n"
    return jobs, files


def class_lists() -> dict:
    """classes.json: action classes, the paired classes, attribute names, each set's label order."""
    return {
        "actions": list(ACTIONS),
        "pairs": [list(p) for p in PAIRS],
        "anomaly": list(ANOMALY_CLASSES),
        "attributes": {k: list(v) for k, v in ATTRIBUTES.items()},
        "sets": {
            "pretrain": list(ACTIONS),
            "actions": list(ACTIONS),
            "privacy_videos": list(ACTIONS),
            "privacy_images": [],
            "untrimmed": list(ACTIONS),
            "anomaly": list(ANOMALY_CLASSES),
            "bias": list(ACTIONS),
        },
    }


# ----------------------------------------------------------------------------- rendering


def _camera(n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-frame camera offsets in pixels: a random vertical offset and, half the time, a shake."""
    cam = np.zeros((n, 2), dtype=np.float32)
    cam[:, 1] = rng.uniform(-1.5, 1.5)
    if rng.random() < 0.5:
        cam += rng.normal(0, 0.25, (n, 2)).astype(np.float32)
    return cam


def _placement(
    cfg: DataConfig, rng: np.random.Generator, x: float | None = None, facing: float | None = None
) -> Placement:
    return Placement(
        x=float(cfg.width / 2 + rng.uniform(-0.12, 0.12) * cfg.width) if x is None else x,
        ground=float(cfg.height * rng.uniform(0.86, 0.94)),
        scale=float(cfg.height * rng.uniform(0.68, 0.76)),
        facing=float(rng.choice([-1.0, 1.0])) if facing is None else facing,
    )


def _finish(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return finish(canvas, rng, noise_std=float(rng.uniform(1.5, 6.0)), gain=float(rng.uniform(0.94, 1.06)))


def _timeline_poses(job: Job, cfg: DataConfig, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Poses of the main actor (and partner), and forward speed, for a long video's timeline."""
    pieces, partner_pieces, speeds = [], [], []
    for start, end, what in job.timeline:
        t = np.arange(end - start, dtype=np.float32) / cfg.fps
        speed = np.zeros(len(t), dtype=np.float32)
        other = None
        kind, _, name = what.partition(":")
        if kind == "idle":
            pose = idle_pose(name, t, job.person, float(rng.uniform(0, 6.3)))
        elif kind == "normal" and name == "walk":
            pose, speed = action_pose("Walk", t, job.person, rng)
        elif kind == "normal" and name == "talk":
            pose = talk_pose(t, job.person, rng)
            other = talk_pose(t, job.partner or job.person, rng)
        elif kind == "normal":
            pose = talk_pose(t, job.person, rng)  # standing alone, gesturing a little
        elif name == "Falling":
            pose = fall_pose(t, job.person, rng)
        elif name == "Fighting":
            pose = fight_pose(t, job.person, rng)
            other = fight_pose(t, job.partner or job.person, rng)
        elif name == "Running":
            pose, speed = action_pose("Run", t, job.person, rng)
        else:
            pose, speed = action_pose(what, t, job.person, rng)
        pieces.append(pose)
        partner_pieces.append(other if other is not None else idle_pose("stand", t, job.partner or job.person, 0.0))
        speeds.append(speed)
    partner = join(partner_pieces) if job.partner is not None else None
    return join(pieces), np.concatenate(speeds), partner


SCENE_POOL_STREAM = 7919  # seeds the shared scene pool apart from every job's own stream


def job_scene(cfg: DataConfig, rng: np.random.Generator) -> Scene:
    """A video's background: its own (``scenes`` = 0) or one of a pool shared by all videos."""
    if cfg.scenes > 0:
        index = int(rng.integers(cfg.scenes))
        return random_scene(np.random.default_rng([cfg.seed, SCENE_POOL_STREAM, index]), cfg.width, cfg.height)
    return random_scene(rng, cfg.width, cfg.height)


def render_job(job: Job, cfg: DataConfig) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one planned video (a single frame for images)."""
    rng = np.random.default_rng(list(job.seed))
    h, w = cfg.height, cfg.width
    scene = job_scene(cfg, rng)
    if job.kind == "timeline":
        pose, speed, partner_pose = _timeline_poses(job, cfg, rng)
    else:
        t = np.arange(job.n_frames, dtype=np.float32) / cfg.fps
        pose, speed = action_pose(job.action, t, job.person, rng)
        partner_pose = None
    if partner_pose is not None:
        gap = float(rng.uniform(0.16, 0.22)) * w
        place = _placement(cfg, rng, x=w / 2 - gap, facing=1.0)
        partner_place = _placement(cfg, rng, x=w / 2 + gap, facing=-1.0)
    else:
        place, partner_place = _placement(cfg, rng), None
    # the camera tracks a walking or running actor: the background pans, the actor stays framed
    pan = place.facing * speed * place.scale * job.person.stature / cfg.fps
    actor_cam = _camera(len(pose), rng)
    background_cam = actor_cam.copy()
    background_cam[:, 0] += float(rng.uniform(0, 200)) + np.cumsum(pan).astype(np.float32)
    if job.kind == "image":
        # a still: one moment of the motion, drawn alone (images are many and must stay cheap)
        moment = slice(k := int(rng.integers(len(pose))), k + 1)
        pose, actor_cam, background_cam = pose[moment], actor_cam[moment], background_cam[moment]
        partner_pose = None if partner_pose is None else partner_pose[moment]
    canvas = render_scene(scene, background_cam, h, w)
    if partner_pose is not None and job.partner is not None:
        assert partner_place is not None  # placed above whenever there is a partner pose
        draw_actor(canvas, partner_pose, job.partner, random_outfit(rng), partner_place, actor_cam)
    draw_actor(canvas, pose, job.person, job.outfit, place, actor_cam)
    frames = _finish(canvas, rng)
    return frames[0] if job.kind == "image" else frames


# ----------------------------------------------------------------------------- writing


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    write_text_atomic(path, text)


# Settings added after generator version 3 that change nothing at 1: left out of the stamp there,
# so that a benchmark generated before they existed is still recognised as the same one.
NEUTRAL_AT_ONE = TEST_MULTIPLIERS


def _config_stamp(cfg: DataConfig) -> dict:
    # where it is written and how many processes write it do not change the content
    settings = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("root", "workers") and not (k in NEUTRAL_AT_ONE and v == 1)
    }
    blob = json.dumps({"generator": GENERATOR_VERSION, **settings}, sort_keys=True)
    return {
        "generator": GENERATOR_VERSION,
        "config": settings,
        "config_hash": hashlib.sha256(blob.encode()).hexdigest()[:16],
    }


def _claim_root(root: Path, cfg: DataConfig) -> None:
    """Refuse to mix files generated with other settings into the same root."""
    stamp = _config_stamp(cfg)
    path = root / layouts.STAMP_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: unreadable generation stamp ({exc}); delete the benchmark folder") from exc
        if old.get("config_hash") != stamp["config_hash"]:
            raise DataError(
                f"{path}: this folder holds a benchmark generated with other data settings "
                f"({old.get('config_hash')} != {stamp['config_hash']}); delete it or choose another data.root"
            )
    elif root.exists() and any(root.iterdir()):
        raise DataError(f"{root}: folder is not empty and holds no generated benchmark; choose another data.root")
    _atomic_text(path, json.dumps(stamp, indent=2, sort_keys=True) + "\n")


def _render_and_write(job: Job, cfg: DataConfig, root: Path) -> str:
    """Render one planned file and write it atomically (runs in worker processes too)."""
    frames = render_job(job, cfg)
    out = root / job.path
    if job.kind == "image":
        write_image(out, frames)
    else:
        write_video(out, frames, cfg.fps, cfg.codec)
    return job.path


def generate_benchmark(cfg: DataConfig, root: Path, report_dir: Path) -> dict:
    """Write the whole benchmark under root; contact sheets and summary.json under report_dir."""
    t0 = time.perf_counter()
    root, report_dir = Path(root), Path(report_dir)
    jobs, files = plan_benchmark(cfg)
    root.mkdir(parents=True, exist_ok=True)
    _claim_root(root, cfg)
    for rel, text in files.items():
        _atomic_text(root / rel, text)
    todo = [job for job in jobs if not (root / job.path).exists()]
    skipped = len(jobs) - len(todo)
    if cfg.workers > 1 and len(todo) > 1:
        # fork where the platform has it: spawn would re-import an unguarded __main__ module
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context(method)) as pool:
            # map submits every chunk (starting the workers) before the progress bar's thread exists
            done = pool.map(_render_and_write, todo, repeat(cfg), repeat(root), chunksize=8)
            for _ in tqdm(done, total=len(todo), desc="generate", unit="video", disable=None):
                pass
    else:
        for job in tqdm(todo, desc="generate", unit="video", disable=None):
            _render_and_write(job, cfg, root)
    rendered = len(todo)
    seconds_render = time.perf_counter() - t0
    sheets = write_contact_sheets(jobs, root, report_dir)
    counts = {s: sum(j.set_name == s for j in jobs) for s in layouts.SETS}
    frames = {s: sum(1 if j.kind == "image" else j.n_frames for j in jobs if j.set_name == s) for s in layouts.SETS}
    size = sum((root / j.path).stat().st_size for j in jobs)
    summary = {
        "root": str(root),
        "videos": counts,
        "frames": frames,
        "total_files": len(jobs),
        "rendered": rendered,
        "skipped_existing": skipped,
        "bytes": size,
        "seconds_generate": round(seconds_render, 2),
        "workers": cfg.workers,
        "seconds": round(time.perf_counter() - t0, 2),
        "contact_sheets": [str(p) for p in sheets],
        "config_hash": _config_stamp(cfg)["config_hash"],
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    _atomic_text(report_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
