"""Per-test-video pieces of each task's metric: what paired bootstrap resamples of the test
videos and seed ensembles are scored from, without the heads."""

from __future__ import annotations

import numpy as np

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet
from latentanon.tasks.annotations import _snippet_seconds, anomaly_frame_labels, parse_segments, snippet_frames
from latentanon.tasks.fitting import _outputs, _task_of
from latentanon.tasks.metrics import TIOU_THRESHOLDS, proposals_from_scores, temporal_iou
from latentanon.tasks.specs import TASKS


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
