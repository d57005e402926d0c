"""Utility tasks: fit a head on train features, select hyper-parameters on val, score on test.

| task | feature set | kind     | labels                                | metric                              |
|------|-------------|----------|---------------------------------------|-------------------------------------|
| ar   | actions     | clips    | ``label_id``                          | top-1 of softmax averaged over clips |
| tad  | untrimmed   | snippets | ``segments`` [start_s, end_s, label]  | mAP averaged over tIoU 0.3:0.1:0.7  |
| ad   | anomaly     | snippets | ``anomaly`` (video), test ``segments`` | frame-level ROC AUC                 |

A head reads its features in one of ``HEAD_INPUTS`` (standardised per dimension, or principal axes,
which no rotation of the features can change); given several, val chooses per method, task and seed.
Test data is only ever passed to the final scoring of the already selected head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet
from latentanon.tasks.heads import BACKGROUND, ADHead, ARHead, TADHead

TASKS = ("ar", "tad", "ad")
TIOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
DEFAULT_SNIPPET_FRAMES = 16


@dataclass(frozen=True)
class TaskSpec:
    set_name: str
    kind: str
    metric: str
    grid: tuple[dict, ...]  # hyper-parameter choices tried; the first is the default


TASK_SPECS: dict[str, TaskSpec] = {
    "ar": TaskSpec(
        "actions", "clips", "top1", ({"weight_decay": 1e-4}, {"weight_decay": 1e-2}, {"weight_decay": 1e-1})
    ),
    "tad": TaskSpec(
        "untrimmed",
        "snippets",
        "mAP@tIoU0.3:0.7",
        ({"hidden": 64, "weight_decay": 1e-3}, {"hidden": 128, "weight_decay": 1e-2}),
    ),
    # hidden 128 / decay 1e-2 scored lower on val on average and doubled the cost of each kernel
    "ad": TaskSpec(
        "anomaly",
        "snippets",
        "frame_roc_auc",
        ({"hidden": 64, "weight_decay": 1e-3, "kernel": 3}, {"hidden": 64, "weight_decay": 1e-3, "kernel": 5}),
    ),
}
# Bump when the same features would be measured differently (heads, their grids, attackers,
# metrics): tune's study name and evaluate's resume fingerprint carry it, so figures measured
# the old way are never mixed with new ones.
MEASUREMENT_VERSION = 3  # 2: temporal AD head; 3: its grid of two kernels
HEAD_STEPS = 300
HEAD_LR = 3e-3
HEAD_BATCH = 256


# set name -> (moving kind, task it carries): what a method co-trains task heads on.
TRAINING_SETS: dict[str, tuple[str, str]] = {spec.set_name: (spec.kind, task) for task, spec in TASK_SPECS.items()}


def _spec(task: str) -> TaskSpec:
    if task not in TASK_SPECS:
        raise KeyError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    return TASK_SPECS[task]


# ----------------------------------------------------------------------------- annotations


def parse_segments(value, where: str = "segments") -> list[tuple[float, float, str]]:
    """A record's ``segments`` (a list or its JSON text) as (start_s, end_s, label) tuples."""
    if (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or (isinstance(value, str) and not value.strip())
    ):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: segments are not valid JSON: {exc}") from exc
    out = []
    for item in value:
        if len(item) < 2:
            raise DataError(f"{where}: segment {item!r} needs [start_sec, end_sec, label]")
        start, end = float(item[0]), float(item[1])
        if end < start:
            raise DataError(f"{where}: segment {item!r} ends before it starts")
        out.append((start, end, str(item[2]) if len(item) > 2 else ""))
    return out


def snippet_frames(fs: FeatureSet) -> int:
    """Frames per snippet step, from the extraction params the store recorded (shard meta
    ``params`` or index meta ``extract``), else the 16-frame default."""
    for key in ("params", "extract"):
        section = fs.meta.get(key)
        if isinstance(section, dict) and "snippet_stride" in section:
            return int(section["snippet_stride"])
    return int(fs.meta.get("snippet_stride", DEFAULT_SNIPPET_FRAMES))


def _snippet_seconds(fs: FeatureSet, row) -> float:
    fps = float(row["fps"]) if "fps" in row and row["fps"] else 0.0
    if fps <= 0:
        raise DataError(f"feature set {fs.name!r}: video {row.get('video_id', '?')} has no valid fps")
    return snippet_frames(fs) / fps


def tad_vocabulary(*sets: FeatureSet) -> list[str]:
    """Action names found in the segments of the given sets, sorted (class id = position)."""
    names: set[str] = set()
    for fs in sets:
        for i, value in enumerate(fs.records.get("segments", [])):
            names.update(label for _, _, label in parse_segments(value, f"{fs.name} row {i}"))
    return sorted(names)


def tad_targets(fs: FeatureSet, vocabulary: list[str]) -> list[np.ndarray]:
    """Per-snippet class targets (0 background, 1 + vocabulary index) from each snippet's centre time."""
    index = {name: i + 1 for i, name in enumerate(vocabulary)}
    out = []
    for i, (row, seq) in enumerate(zip(fs.records.to_dict("records"), fs.kind("snippets"))):
        step = _snippet_seconds(fs, row)
        centres = (np.arange(seq.shape[0]) + 0.5) * step
        target = np.full(seq.shape[0], BACKGROUND, dtype=np.int64)
        for start, end, label in parse_segments(row.get("segments"), f"{fs.name} row {i}"):
            if label in index:
                target[(centres >= start) & (centres < end)] = index[label]
        out.append(target)
    return out


def anomaly_frame_labels(fs: FeatureSet) -> list[np.ndarray]:
    """0/1 per frame of each video from its temporal annotations (frame f at time f / fps)."""
    out = []
    for i, row in enumerate(fs.records.to_dict("records")):
        frames, fps = int(row["frames"]), float(row["fps"])
        times = np.arange(frames) / fps
        labels = np.zeros(frames, dtype=np.int64)
        for start, end, _ in parse_segments(row.get("segments"), f"{fs.name} row {i}"):
            labels[(times >= start) & (times < end)] = 1
        out.append(labels)
    return out


# ----------------------------------------------------------------------------- metrics


def top1_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probabilities).argmax(axis=1) == np.asarray(labels)).mean())


def temporal_iou(segment: tuple[float, float], others: np.ndarray) -> np.ndarray:
    """tIoU of one [start, end] with each row of an (n, 2) array."""
    others = np.asarray(others, dtype=float).reshape(-1, 2)
    inter = np.clip(np.minimum(segment[1], others[:, 1]) - np.maximum(segment[0], others[:, 0]), 0, None)
    union = (segment[1] - segment[0]) + (others[:, 1] - others[:, 0]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def temporal_nms(segments: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best first."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep: list[int] = []
    segments = np.asarray(segments, dtype=float).reshape(-1, 2)
    while order:
        best = order.pop(0)
        keep.append(best)
        if order:
            ious = temporal_iou(tuple(segments[best]), segments[order])
            order = [o for o, iou in zip(order, ious) if iou <= iou_threshold]
    return keep


def proposals_from_scores(
    probabilities: np.ndarray,
    snippet_seconds: float,
    thresholds: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9),
    nms_iou: float = 0.5,
    max_per_video: int = 100,
) -> list[tuple[float, float, int, float]]:
    """Detections (start_s, end_s, class_index, score) from per-snippet class probabilities.

    ``probabilities`` is (T, C + 1) with background at 0. For each action class, every run of
    consecutive snippets above a threshold becomes a proposal scored by its mean probability;
    several thresholds give proposals of several extents, per-class NMS removes duplicates.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    detections: list[tuple[float, float, int, float]] = []
    for cls in range(1, probabilities.shape[1]):
        curve = probabilities[:, cls]
        segments, scores = [], []
        for threshold in thresholds:
            above = np.concatenate([[False], curve >= threshold, [False]])
            edges = np.flatnonzero(np.diff(above.astype(int)))
            for start, end in zip(edges[::2], edges[1::2]):
                segments.append((start * snippet_seconds, end * snippet_seconds))
                scores.append(float(curve[start:end].mean()))
        if not segments:
            continue
        for k in temporal_nms(np.array(segments), np.array(scores), nms_iou):
            detections.append((segments[k][0], segments[k][1], cls - 1, scores[k]))
    detections.sort(key=lambda d: -d[3])
    return detections[:max_per_video]


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-style AP: area under the monotone precision envelope of the precision-recall curve."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    changed = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[changed] - mrec[changed - 1]) * mprec[changed]))


def class_average_precision(detections: list[tuple], ground_truth: list[tuple], iou_threshold: float) -> float:
    """AP of one class. detections: (video, start, end, score); ground_truth: (video, start, end).

    Detections are taken best first; each is a true positive when its best-overlapping ground
    truth not yet matched reaches the threshold; a ground truth is matched at most once.
    """
    if not ground_truth:
        raise ValueError("class_average_precision needs at least one ground-truth instance")
    by_video: dict = {}
    for video, start, end in ground_truth:
        by_video.setdefault(video, []).append((start, end))
    gt_arrays = {v: np.array(s, dtype=float) for v, s in by_video.items()}
    used = {v: np.zeros(len(s), dtype=bool) for v, s in by_video.items()}
    ordered = sorted(detections, key=lambda d: -d[3])
    tp = np.zeros(len(ordered))
    for i, (video, start, end, _) in enumerate(ordered):
        if video not in gt_arrays:
            continue
        ious = temporal_iou((start, end), gt_arrays[video])
        for j in np.argsort(-ious, kind="stable"):
            if ious[j] < iou_threshold:
                break
            if not used[video][j]:
                used[video][j] = True
                tp[i] = 1
                break
    if not len(ordered):
        return 0.0
    tp_cum = np.cumsum(tp)
    precision = tp_cum / np.arange(1, len(ordered) + 1)
    recall = tp_cum / len(ground_truth)
    return average_precision(precision, recall)


def detection_map(
    detections: list[tuple],
    ground_truth: list[tuple],
    thresholds: tuple[float, ...] = TIOU_THRESHOLDS,
) -> dict:
    """mAP over classes with ground truth, per tIoU threshold and averaged over thresholds.

    detections: (video, start, end, label, score); ground_truth: (video, start, end, label).
    """
    classes = sorted({g[3] for g in ground_truth})
    if not classes:
        raise DataError("temporal action detection: no ground-truth segments to score against")
    per_threshold = {}
    for threshold in thresholds:
        aps = []
        for cls in classes:
            dets = [(d[0], d[1], d[2], d[4]) for d in detections if d[3] == cls]
            gts = [(g[0], g[1], g[2]) for g in ground_truth if g[3] == cls]
            aps.append(class_average_precision(dets, gts, threshold))
        per_threshold[f"{threshold:.1f}"] = float(np.mean(aps))
    return {"map": float(np.mean(list(per_threshold.values()))), "per_threshold": per_threshold}


def frame_level_auc(snippet_scores: list[np.ndarray], frame_labels: list[np.ndarray], frames_per_snippet: int) -> float:
    """ROC AUC over every frame of every video; a frame takes the score of the snippet holding it
    (frames past the last full snippet take the last snippet's score)."""
    scores, labels = [], []
    for s, y in zip(snippet_scores, frame_labels):
        s = np.asarray(s, dtype=float)
        if not len(s):
            raise DataError("anomaly detection: a video has no snippet scores")
        idx = np.minimum(np.arange(len(y)) // frames_per_snippet, len(s) - 1)
        scores.append(s[idx])
        labels.append(np.asarray(y))
    labels_all = np.concatenate(labels)
    if labels_all.min() == labels_all.max():
        raise DataError("anomaly detection: frame labels hold a single class, ROC AUC is undefined")
    return float(roc_auc_score(labels_all, np.concatenate(scores)))


# ----------------------------------------------------------------------------- heads


def _padded(items: list[np.ndarray], dim: int, transform) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T_max, dim) float32 of each item's ``transform``ed rows, zero-padded, and its (N, T_max) mask."""
    t_max = max(a.shape[0] for a in items)
    x = np.zeros((len(items), t_max, dim), dtype=np.float32)
    mask = np.zeros((len(items), t_max), dtype=bool)
    for i, a in enumerate(items):
        x[i, : a.shape[0]] = transform(a)
        mask[i, : a.shape[0]] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


class _Standardized:
    """Feature-wise standardisation with statistics of the training features only."""

    def __init__(self, items: list[np.ndarray]):
        stacked = np.concatenate([a for a in items if len(a)], axis=0).astype(np.float64)
        self.mean = stacked.mean(axis=0).astype(np.float32)
        self.std = (stacked.std(axis=0) + 1e-6).astype(np.float32)

    def padded(self, items: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return _padded(items, len(self.mean), lambda a: (a - self.mean) / self.std)


class _PrincipalAxes:
    """Features centred and turned into their principal axes on the train split, each axis signed
    so that its third moment on train is positive, all divided by one overall scale. A rotation,
    reflection, shift or uniform scaling of the features gives the same inputs, so the
    information-preserving control reads exactly no utility change; per-dimension standardisation
    does not (1.2-1.7% on TAD and AD in bench_power's larger test set). One scale for all axes, not
    one per axis: whitening every axis gave weak directions as much say as strong ones and cut raw
    val utility (AR 0.67 -> 0.61, TAD mAP 0.32 -> 0.10)."""

    def __init__(self, items: list[np.ndarray]):
        stacked = np.concatenate([a for a in items if len(a)], axis=0).astype(np.float64)
        self.mean = stacked.mean(axis=0)
        centred = stacked - self.mean
        eigenvalues, axes = np.linalg.eigh(centred.T @ centred / max(len(stacked) - 1, 1))
        order = np.argsort(-eigenvalues, kind="stable")
        eigenvalues, axes = np.clip(eigenvalues[order], 0.0, None), axes[:, order]
        signs = np.where(((centred @ axes) ** 3).sum(axis=0) < 0, -1.0, 1.0)
        scale = np.sqrt(max(float(eigenvalues.mean()), 1e-12))
        self.projection = axes * signs / scale

    def padded(self, items: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return _padded(
            items, self.projection.shape[1], lambda a: (np.asarray(a, dtype=np.float64) - self.mean) @ self.projection
        )


# What a head reads: the first is the default (and what tune measures with).
HEAD_INPUTS: dict[str, type[_Standardized] | type[_PrincipalAxes]] = {
    "standardised": _Standardized,
    "principal_axes": _PrincipalAxes,
}


def _require(fs: FeatureSet, task: str, columns: tuple[str, ...]) -> None:
    spec = _spec(task)
    if spec.kind not in fs.arrays:
        raise DataError(f"task {task}: feature set {fs.name!r} has no {spec.kind!r} features")
    missing = [c for c in columns if c not in fs.records.columns]
    if missing:
        raise DataError(f"task {task}: feature set {fs.name!r} lacks columns {missing}")
    if not len(fs):
        raise DataError(f"task {task}: feature set {fs.name!r} split is empty")


@dataclass
class FittedHead:
    task: str
    head: torch.nn.Module
    inputs: _Standardized | _PrincipalAxes  # fitted on the train split; maps any split's features
    vocabulary: list[str]


def fit_head(
    task: str,
    train: FeatureSet,
    hyper: dict,
    seed: int,
    vocabulary: list[str] | None = None,
    inputs: str = "standardised",
) -> FittedHead:
    """Train the task's head on the train split (minibatch AdamW, fixed step count, seeded), reading
    the features as ``inputs`` (a ``HEAD_INPUTS`` name) fitted on that split."""
    spec = _spec(task)
    if inputs not in HEAD_INPUTS:
        raise KeyError(f"unknown head inputs {inputs!r}; choose from {', '.join(HEAD_INPUTS)}")
    columns = {"ar": ("label_id",), "tad": ("segments", "fps"), "ad": ("anomaly",)}[task]
    _require(train, task, columns)
    items = train.kind(spec.kind)
    reader = HEAD_INPUTS[inputs](items)
    x, mask = reader.padded(items)
    dim = x.shape[-1]
    vocabulary = list(vocabulary) if vocabulary is not None else (tad_vocabulary(train) if task == "tad" else [])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head: ARHead | TADHead | ADHead
        if task == "ar":
            head = ARHead(dim, int(train.records["label_id"].max()) + 1)
            targets = torch.tensor(train.records["label_id"].to_numpy(dtype=np.int64))
        elif task == "tad":
            if not vocabulary:
                raise DataError(f"task tad: feature set {train.name!r} has no action segments in its train split")
            head = TADHead(dim, len(vocabulary), hidden=int(hyper.get("hidden", 64)))
            per_video = tad_targets(train, vocabulary)
            targets = torch.zeros(mask.shape, dtype=torch.long)
            for i, t in enumerate(per_video):
                targets[i, : len(t)] = torch.from_numpy(t)
        else:
            head = ADHead(dim, hidden=int(hyper.get("hidden", 64)), kernel=int(hyper.get("kernel", 3)))
            targets = torch.tensor(train.records["anomaly"].to_numpy(dtype=np.int64))
        optimizer = torch.optim.AdamW(head.parameters(), lr=HEAD_LR, weight_decay=float(hyper.get("weight_decay", 0.0)))
        generator = torch.Generator().manual_seed(seed)
        n = x.shape[0]
        for _ in range(HEAD_STEPS):
            rows = torch.randperm(n, generator=generator)[:HEAD_BATCH] if n > HEAD_BATCH else torch.arange(n)
            loss = head.loss(x[rows], mask[rows], targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return FittedHead(task, head.eval(), reader, vocabulary)


@torch.no_grad()
def _outputs(fitted, fs: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """The head's outputs on ``fs`` (averaged over restarts when given several heads): AR video
    probabilities (N, C), TAD snippet probabilities (N, T, C + 1), AD snippet scores (N, T)."""
    heads = list(fitted) if isinstance(fitted, (list, tuple)) else [fitted]
    first = heads[0]
    task, spec = first.task, _spec(first.task)
    x, mask = first.inputs.padded(fs.kind(spec.kind))
    outs = []
    for h in heads:
        if task == "ar":
            outs.append(h.head.video_probabilities(x, mask).numpy())
        elif task == "tad":
            outs.append(h.head.probabilities(x, mask).numpy())
        else:
            outs.append(h.head(x, mask).numpy())
    return np.mean(outs, axis=0), mask.numpy()


def _tad_detections(fitted, fs: FeatureSet, probs: np.ndarray, mask: np.ndarray) -> tuple[list, list]:
    vocabulary = (fitted[0] if isinstance(fitted, (list, tuple)) else fitted).vocabulary
    detections, ground_truth = [], []
    for i, row in enumerate(fs.records.to_dict("records")):
        t = int(mask[i].sum())
        for start, end, cls, score in proposals_from_scores(probs[i, :t], _snippet_seconds(fs, row)):
            detections.append((i, start, end, vocabulary[cls], score))
        for start, end, label in parse_segments(row.get("segments"), f"{fs.name} row {i}"):
            ground_truth.append((i, start, end, label))
    return detections, ground_truth


def _task_of(fitted) -> str:
    return (fitted[0] if isinstance(fitted, (list, tuple)) else fitted).task


def evaluate_head(fitted, fs: FeatureSet) -> float:
    """The task's metric of a fitted head (or of several restarts, outputs averaged) on one split."""
    task = _task_of(fitted)
    _require(fs, task, {"ar": ("label_id",), "tad": ("segments", "fps"), "ad": ("segments", "frames", "fps")}[task])
    outputs, mask = _outputs(fitted, fs)
    if task == "ar":
        return top1_accuracy(outputs, fs.records["label_id"].to_numpy())
    if task == "tad":
        return detection_map(*_tad_detections(fitted, fs, outputs, mask))["map"]
    per_video = [outputs[i, : int(mask[i].sum())] for i in range(len(fs))]
    return frame_level_auc(per_video, anomaly_frame_labels(fs), snippet_frames(fs))


# ----------------------------------------------------------------------------- per-item outputs


def match_detections(detections: list[tuple], ground_truth: list[tuple], iou_threshold: float) -> np.ndarray:
    """0/1 per detection (video, start, end, label, score): a true positive as
    ``class_average_precision`` counts it. Matching never crosses videos, so a detection's flag does
    not depend on which other videos are scored with it (what lets resamples reuse it)."""
    flags = np.zeros(len(detections))
    by_key: dict = {}
    for video, start, end, label in ground_truth:
        by_key.setdefault((video, label), []).append((start, end))
    used = {k: np.zeros(len(v), dtype=bool) for k, v in by_key.items()}
    arrays = {k: np.array(v, dtype=float) for k, v in by_key.items()}
    for i in sorted(range(len(detections)), key=lambda k: -detections[k][4]):
        video, start, end, label, _ = detections[i]
        key = (video, label)
        if key not in arrays:
            continue
        ious = temporal_iou((start, end), arrays[key])
        for j in np.argsort(-ious, kind="stable"):
            if ious[j] < iou_threshold:
                break
            if not used[key][j]:
                used[key][j] = True
                flags[i] = 1
                break
    return flags


# The piece of each task's items that the heads of several seeds are averaged on (``ensemble_items``).
ENSEMBLE_PIECES = {"ar": "probabilities", "tad": "snippet_probabilities", "ad": "unit_score"}


def _tad_pieces(fitted, fs: FeatureSet, probabilities: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """What TAD's detections and mAP are rebuilt from: the snippet class probabilities (N, T, C + 1,
    padded), snippets per video, snippet length, the ground truth (class index into the sorted
    ground-truth labels) and the ground-truth class of each head class (-1: none)."""
    vocabulary = (fitted[0] if isinstance(fitted, (list, tuple)) else fitted).vocabulary
    rows = fs.records.to_dict("records")
    ground_truth = [
        (i, start, end, label)
        for i, row in enumerate(rows)
        for start, end, label in parse_segments(row.get("segments"), f"{fs.name} row {i}")
    ]
    classes = sorted({g[3] for g in ground_truth})
    index = {c: k for k, c in enumerate(classes)}
    return {
        "snippet_probabilities": np.asarray(probabilities, dtype=np.float64),
        "snippet_counts": mask.sum(axis=1).astype(np.int64),
        "snippet_seconds": np.array([_snippet_seconds(fs, row) for row in rows], dtype=np.float64),
        "vocabulary_class": np.array([index.get(name, -1) for name in vocabulary], dtype=np.int64),
        "gt_video": np.array([g[0] for g in ground_truth], dtype=np.int64),
        "gt_start": np.array([g[1] for g in ground_truth], dtype=np.float64),
        "gt_end": np.array([g[2] for g in ground_truth], dtype=np.float64),
        "gt_class": np.array([index[g[3]] for g in ground_truth], dtype=np.int64),
    }


def tad_detection_items(
    pieces: dict[str, np.ndarray], probabilities: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Detections (``proposals_from_scores`` per video and class, NMS), their true-positive flags per
    tIoU threshold and the ground-truth counts per video and class: what ``resampled_values``
    scores TAD from. ``probabilities`` replaces the pieces' own (e.g. averaged over seeds)."""
    probs = pieces["snippet_probabilities"] if probabilities is None else np.asarray(probabilities)
    counts, seconds = pieces["snippet_counts"], pieces["snippet_seconds"]
    vocabulary_class, gt_class = pieces["vocabulary_class"], pieces["gt_class"]
    n_videos = len(counts)
    n_classes = int(gt_class.max()) + 1 if len(gt_class) else 0
    ground_truth = [
        (int(v), float(s), float(e), int(c))
        for v, s, e, c in zip(pieces["gt_video"], pieces["gt_start"], pieces["gt_end"], gt_class)
    ]
    detections = []
    for i in range(n_videos):
        for start, end, cls, score in proposals_from_scores(probs[i, : int(counts[i])], float(seconds[i])):
            if vocabulary_class[cls] >= 0:
                detections.append((i, start, end, int(vocabulary_class[cls]), score))
    gt_counts = np.zeros((n_videos, n_classes))
    for video, _, _, cls in ground_truth:
        gt_counts[video, cls] += 1
    return {
        "det_video": np.array([d[0] for d in detections], dtype=np.int64),
        "det_class": np.array([d[3] for d in detections], dtype=np.int64),
        "det_score": np.array([d[4] for d in detections], dtype=np.float64),
        "det_tp": np.stack([match_detections(detections, ground_truth, t) for t in TIOU_THRESHOLDS])
        if detections
        else np.zeros((len(TIOU_THRESHOLDS), 0)),
        "gt_counts": gt_counts,
    }


def item_scores(fitted, fs: FeatureSet) -> dict[str, np.ndarray]:
    """Per-test-video pieces of the task's metric, so that resamples of the test videos can be
    scored without the model (``resampled_values``), and the head outputs that heads of several
    seeds are averaged on (``ensemble_items``). Arrays only (saved as .npz)."""
    task = _task_of(fitted)
    outputs, mask = _outputs(fitted, fs)
    if task == "ar":
        labels = fs.records["label_id"].to_numpy().astype(np.int64)
        correct = (outputs.argmax(axis=1) == labels).astype(np.float64)
        return {"correct": correct, "probabilities": outputs.astype(np.float64), "labels": labels}
    if task == "tad":
        pieces = _tad_pieces(fitted, fs, outputs, mask)
        return {**tad_detection_items(pieces), **pieces}
    # AD: one unit per (video, snippet): its score and how many anomalous / normal frames take it
    per_frame = snippet_frames(fs)
    videos, scores, positives, negatives = [], [], [], []
    for i, labels in enumerate(anomaly_frame_labels(fs)):
        t = int(mask[i].sum())
        if not t:
            raise DataError("anomaly detection: a video has no snippet scores")
        snippet = np.minimum(np.arange(len(labels)) // per_frame, t - 1)
        pos = np.bincount(snippet, weights=labels, minlength=t)
        total = np.bincount(snippet, minlength=t)
        videos.append(np.full(t, i))
        scores.append(outputs[i, :t])
        positives.append(pos)
        negatives.append(total - pos)
    return {
        "unit_video": np.concatenate(videos),
        "unit_score": np.concatenate(scores).astype(np.float64),
        "unit_pos": np.concatenate(positives),
        "unit_neg": np.concatenate(negatives),
    }


def ensemble_items(task: str, per_seed: list[dict[str, np.ndarray]], where: str = "items") -> dict[str, np.ndarray]:
    """The items of the seed ensemble: the heads' outputs averaged over seeds (AR video class
    probabilities, then argmax; TAD snippet class probabilities, then detection and NMS; AD unit
    scores), in the form ``resampled_values`` scores. Every seed must hold the same test items."""
    if not per_seed:
        raise ValueError(f"{where}: no seeds to average")
    piece = ENSEMBLE_PIECES.get(task)
    if piece is None:
        raise KeyError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    lacking = [k for k, items in enumerate(per_seed) if piece not in items]
    if lacking:
        raise DataError(
            f"{where}: task {task} items of seed position(s) {lacking} lack {piece!r} (written by an "
            "older version); re-run evaluate"
        )
    first = per_seed[0]
    same = {
        "ar": ("labels",),
        "tad": ("snippet_counts", "gt_video", "gt_class", "vocabulary_class"),
        "ad": ("unit_video", "unit_pos", "unit_neg"),
    }[task]
    for items in per_seed[1:]:
        for key in (piece, *same):
            if np.shape(items[key]) != np.shape(first[key]) or (
                key != piece and not np.array_equal(items[key], first[key])
            ):
                raise DataError(f"{where}: task {task} seeds disagree on {key!r}; they must score the same test items")
    averaged = np.mean([np.asarray(items[piece], dtype=np.float64) for items in per_seed], axis=0)
    if task == "ar":
        correct = (averaged.argmax(axis=1) == first["labels"]).astype(np.float64)
        return {"correct": correct, "probabilities": averaged, "labels": first["labels"]}
    if task == "tad":
        pieces = {
            **{k: first[k] for k in first if not k.startswith("det_") and k != "gt_counts"},
            "snippet_probabilities": averaged,
        }
        return {**tad_detection_items(pieces), **pieces}
    return {**{k: first[k] for k in ("unit_video", "unit_pos", "unit_neg")}, "unit_score": averaged}


def _weighted_auc(score: np.ndarray, pos: np.ndarray, neg: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC (ties count one half) of weighted units, for every weight row (B, units)."""
    order = np.argsort(score, kind="stable")
    score, pos, neg, w = score[order], pos[order], neg[order], w[:, order]
    groups = np.r_[0, np.cumsum(score[1:] != score[:-1])]
    n_groups = groups[-1] + 1 if len(groups) else 0
    p = np.zeros((w.shape[0], n_groups))
    n = np.zeros((w.shape[0], n_groups))
    np.add.at(p.T, groups, (w * pos).T)
    np.add.at(n.T, groups, (w * neg).T)
    below = np.cumsum(n, axis=1) - n
    total_p, total_n = p.sum(axis=1), n.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (p * (below + 0.5 * n)).sum(axis=1) / (total_p * total_n)
    return np.where((total_p > 0) & (total_n > 0), auc, np.nan)


def _weighted_map(items: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
    gt_counts = items["gt_counts"]
    totals = weights @ gt_counts  # (B, classes)
    per_threshold = []
    for t in range(items["det_tp"].shape[0]):
        aps = []
        for c in range(gt_counts.shape[1]):
            rows = np.flatnonzero(items["det_class"] == c)
            rows = rows[np.argsort(-items["det_score"][rows], kind="stable")]
            w = weights[:, items["det_video"][rows]]
            tp = items["det_tp"][t, rows]
            cum_tp, cum_n = np.cumsum(w * tp, axis=1), np.cumsum(w, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                precision = np.where(cum_n > 0, cum_tp / np.where(cum_n > 0, cum_n, 1), 0.0)
                envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1] if rows.size else precision
                ap = (w * tp * envelope).sum(axis=1) / totals[:, c]
            aps.append(np.where(totals[:, c] > 0, ap, np.nan))
        with np.errstate(invalid="ignore"):
            per_threshold.append(np.nanmean(np.array(aps), axis=0))
    return np.mean(per_threshold, axis=0)


def resampled_values(task: str, items: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The task's test metric under each row of video weights (B, n_videos): B values. With all
    weights 1 this is the plain test metric (``evaluate_head``)."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if task == "ar":
        return (weights @ items["correct"]) / weights.sum(axis=1)
    if task == "tad":
        return _weighted_map(items, weights)
    if task == "ad":
        return _weighted_auc(items["unit_score"], items["unit_pos"], items["unit_neg"], weights[:, items["unit_video"]])
    raise KeyError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")


def fit_heads(
    task: str,
    train: FeatureSet,
    hyper: dict,
    seed: int,
    restarts: int = 1,
    vocabulary: list[str] | None = None,
    inputs: str = "standardised",
) -> list[FittedHead]:
    """``restarts`` heads from different initialisations; their outputs are averaged when scored
    (a steadier figure than one head's)."""
    return [
        fit_head(task, train, hyper, seed * 1000 + r if r else seed, vocabulary, inputs)
        for r in range(max(1, restarts))
    ]


def score_task(
    task: str,
    train: FeatureSet,
    val: FeatureSet,
    test: FeatureSet,
    seed: int,
    restarts: int = 1,
    items: bool = False,
    inputs: tuple[str, ...] = ("standardised",),
) -> dict:
    """Fit heads on train, keep the best on val, score it on test.

    With several ``inputs`` (``HEAD_INPUTS`` names), the form whose default-hyper-parameter head
    scores best on val is kept (the first on a tie), then each hyper-parameter choice is tried in
    that form: one extra head per further form rather than a whole grid each. ``restarts`` > 1
    averages that many heads' outputs; ``items`` adds the per-test-video pieces for paired
    bootstrap intervals (``item_scores``)."""
    spec = _spec(task)
    if not inputs:
        raise ValueError("score_task: give at least one head input form")
    vocabulary = tad_vocabulary(train) if task == "tad" else None
    candidates = []

    def tried(hyper: dict, form: str) -> tuple[float, list]:
        fitted = fit_heads(task, train, hyper, seed, restarts, vocabulary, form)
        value = evaluate_head(fitted, val)
        candidates.append({"hyper": dict(hyper), "inputs": form, "val_value": value})
        return value, fitted

    defaults = {form: tried(spec.grid[0], form) for form in inputs}
    form = max(inputs, key=lambda f: defaults[f][0])
    best = (*defaults[form], spec.grid[0])
    for hyper in spec.grid[1:]:
        value, fitted = tried(hyper, form)
        if value > best[0]:
            best = (value, fitted, hyper)
    val_value, fitted, hyper = best
    result = {
        "task": task,
        "metric": spec.metric,
        "value": evaluate_head(fitted, test),
        "val_value": val_value,
        "selected": dict(hyper),
        "inputs": form,
        "candidates": candidates,
        "seed": seed,
        "restarts": max(1, restarts),
    }
    if items:
        result["items"] = item_scores(fitted, test)
    return result


def validation_utility(task: str, train: FeatureSet, val: FeatureSet, seed: int) -> float:
    """The task's val metric of its head with the default hyper-parameters, fit on train."""
    spec = _spec(task)
    return evaluate_head(fit_head(task, train, spec.grid[0], seed), val)
