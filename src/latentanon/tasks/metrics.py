"""The utility tasks' metrics: AR top-1, TAD detection mAP over tIoU thresholds (proposals from
snippet scores, NMS, matching to ground truth), AD frame-level ROC AUC."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from latentanon.errors import DataError

TIOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


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
