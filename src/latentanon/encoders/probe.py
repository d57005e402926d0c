"""Linear probes on frozen features: action accuracy (useful?) and attribute attackers (leaky?)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from latentanon.data.layouts import ATTRIBUTE_COLUMNS
from latentanon.encoders.base import ClipEncoder
from latentanon.encoders.clips import video_clips
from latentanon.encoders.extraction import decode

ATTRIBUTES = ATTRIBUTE_COLUMNS


def _read_ahead(function: Callable, items: Iterable, ahead: int) -> Iterator:
    """``function(item)`` of each item in order, computed in one thread up to ``ahead`` items in
    advance: at most ``ahead`` results are held that the caller has not finished with."""
    items = iter(items)
    with ThreadPoolExecutor(max_workers=1) as pool:
        queued = deque(pool.submit(function, item) for item in islice(items, ahead))
        while queued:
            yield queued.popleft().result()
            queued.extend(pool.submit(function, item) for item in islice(items, 1))


def encode_videos(
    encoder: ClipEncoder,
    manifest: pd.DataFrame,
    data_root: Path,
    kind: str,
    clip_frames: int,
    per_video: int,
    batch_size: int = 64,
    desc: str = "probe",
) -> list[np.ndarray]:
    """One (n, dim) array per manifest row: ``per_video`` clips or static clips of the video.

    Clips of consecutive videos share a batch (a video gives two clips, and one forward pass per
    video left the encoder mostly idle) and the next videos decode in a thread while a batch
    encodes; each video's rows are the same as when it is encoded alone."""

    def clips_of(path: str) -> np.ndarray:
        return video_clips(decode(Path(data_root) / path), (kind,), clip_frames, per_video, per_video, clip_frames)[
            kind
        ]

    counts, waiting, encoded = [], [], []
    paths = list(manifest["path"])
    for clips in tqdm(_read_ahead(clips_of, paths, ahead=8), total=len(paths), desc=desc, unit="video", disable=None):
        counts.append(len(clips))
        waiting.append(clips)
        if sum(map(len, waiting)) >= batch_size:
            encoded.append(encoder.encode(np.concatenate(waiting)))
            waiting = []
    if waiting:
        encoded.append(encoder.encode(np.concatenate(waiting)))
    if not encoded:
        return []
    return np.split(np.concatenate(encoded), np.cumsum(counts)[:-1])


def _classifier(seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))


def _repeat(features: list[np.ndarray], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate(features), np.concatenate([np.full(len(f), y) for f, y in zip(features, labels)])


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (stays inside [0, 1] and is sound near 0 and 1)."""
    if trials <= 0:
        raise ValueError("wilson_interval: no trials")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def action_probe(
    train: list[np.ndarray],
    train_labels: np.ndarray,
    test: list[np.ndarray],
    test_labels: np.ndarray,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Top-1 of a linear probe trained on single clips, softmax averaged over each test video's clips,
    with its Wilson interval over the test videos (so that two runs' figures can be compared)."""
    x, y = _repeat(train, train_labels)
    model = _classifier(seed).fit(x, y)
    classes = list(model.classes_)
    probs = np.stack([model.predict_proba(f).mean(axis=0) for f in test])
    predicted = np.asarray(classes)[probs.argmax(axis=1)]
    majority = pd.Series(train_labels).value_counts().idxmax()
    correct = int((predicted == test_labels).sum())
    return {
        "top1": correct / len(test_labels),
        "top1_interval": list(wilson_interval(correct, len(test_labels), confidence)),
        "chance_top1": float((test_labels == majority).mean()),
        "classes": len(set(train_labels) | set(test_labels)),
        "train_videos": len(train),
        "test_videos": len(test),
    }


def class_map(labels: np.ndarray, scores: np.ndarray, classes: list) -> float:
    """Mean over classes present in ``labels`` of one-vs-rest average precision (cMAP)."""
    aps = [average_precision_score(labels == c, scores[:, i]) for i, c in enumerate(classes) if (labels == c).any()]
    return float(np.mean(aps))


def attribute_attack(
    train: list[np.ndarray],
    train_records: pd.DataFrame,
    test: list[np.ndarray],
    test_records: pd.DataFrame,
    seed: int = 0,
) -> dict:
    """Per attribute: a linear attacker on single static clips; accuracy and cMAP on test with chance."""
    results = {}
    for attribute in [a for a in ATTRIBUTES if a in train_records.columns]:
        x, y = _repeat(train, train_records[attribute].to_numpy())
        xt, yt = _repeat(test, test_records[attribute].to_numpy())
        if len(np.unique(y)) < 2:
            continue
        model = _classifier(seed).fit(x, y)
        classes = list(model.classes_)
        scores = model.predict_proba(xt)
        present = [c for c in classes if (yt == c).any()]
        results[attribute] = {
            "accuracy": float((np.asarray(classes)[scores.argmax(axis=1)] == yt).mean()),
            "chance_accuracy": float(pd.Series(yt).value_counts(normalize=True).max()),
            "cmap": class_map(yt, scores, classes),
            "chance_cmap": float(np.mean([(yt == c).mean() for c in present])),
            "classes": len(classes),
            "test_clips": int(len(yt)),
        }
    return results
