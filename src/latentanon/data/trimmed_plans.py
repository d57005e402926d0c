"""Planners of the sets of trimmed clips and images (pretrain, actions, privacy videos and
images, bias): each returns its jobs and the annotation files of the real dataset's layout."""

from __future__ import annotations

import json
import string

import numpy as np

from latentanon.data import layouts
from latentanon.data.actions import ACTIONS
from latentanon.data.actors import ATTRIBUTES, random_outfit
from latentanon.data.cast import _labelled_people
from latentanon.data.config import DataConfig
from latentanon.data.jobs import Job, _sidecar, _videos_per_identity


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
