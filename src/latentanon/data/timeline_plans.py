"""Planners of the sets of long videos, whose jobs carry a timeline: untrimmed (THUMOS14 layout)
and anomaly (UCF-Crime layout), with the annotation files of each."""

from __future__ import annotations

import numpy as np

from latentanon.data import layouts
from latentanon.data.actions import ACTIONS, ANOMALIES, TRANSITIONS
from latentanon.data.actors import random_outfit
from latentanon.data.cast import _labelled_people
from latentanon.data.config import DataConfig
from latentanon.data.jobs import Job, _sidecar, _videos_per_identity


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
