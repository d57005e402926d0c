"""Fit a task head on a train split, and read or score its outputs on any split."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet
from latentanon.tasks.annotations import (
    _snippet_seconds,
    anomaly_frame_labels,
    parse_segments,
    snippet_frames,
    tad_targets,
    tad_vocabulary,
)
from latentanon.tasks.head_inputs import HEAD_INPUTS, _PrincipalAxes, _Standardized
from latentanon.tasks.heads import ADHead, ARHead, TADHead
from latentanon.tasks.metrics import detection_map, frame_level_auc, proposals_from_scores, top1_accuracy
from latentanon.tasks.specs import _spec

HEAD_STEPS = 300
HEAD_LR = 3e-3
HEAD_BATCH = 256
LABEL_COLUMNS = {"ar": ("label_id",), "tad": ("segments", "fps"), "ad": ("anomaly",)}


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


# Fitted heads kept per process, keyed on what they were fitted on: tune's trials, evaluate's
# unseen-task refits and distil's fits read the same raw heads again. Bounded: a whitened head of
# d-dim features holds a d x d projection (4.7 MB at d = 768).
HEAD_MEMO_SIZE = 48
_HEAD_MEMO: OrderedDict[str, FittedHead] = OrderedDict()


def fit_head(
    task: str,
    train: FeatureSet,
    hyper: dict,
    seed: int,
    vocabulary: list[str] | None = None,
    inputs: str = "standardised",
) -> FittedHead:
    """Train the task's head on the train split (minibatch AdamW, fixed step count, seeded), reading
    the features as ``inputs`` (a ``HEAD_INPUTS`` name) fitted on that split.

    The fit is a deterministic function of its arguments, so a head fitted before in this process
    on the same features, labels and settings is returned instead of refitted (the caller must not
    train it further)."""
    _spec(task)  # an unknown task fails here, with the task table's message
    if inputs not in HEAD_INPUTS:
        raise KeyError(f"unknown head inputs {inputs!r}; choose from {', '.join(HEAD_INPUTS)}")
    _require(train, task, LABEL_COLUMNS[task])
    key = _fit_key(task, train, hyper, seed, vocabulary, inputs)
    if key in _HEAD_MEMO:
        _HEAD_MEMO.move_to_end(key)
        return _HEAD_MEMO[key]
    fitted = _train_head(task, train, hyper, seed, vocabulary, inputs)
    _HEAD_MEMO[key] = fitted
    while len(_HEAD_MEMO) > HEAD_MEMO_SIZE:
        _HEAD_MEMO.popitem(last=False)
    return fitted


def clear_head_memo() -> None:
    """Forget every head fitted so far in this process (the next fits train afresh)."""
    _HEAD_MEMO.clear()


def _fit_key(task: str, train: FeatureSet, hyper: dict, seed: int, vocabulary, inputs: str) -> str:
    """Digest of everything a fit reads: the features of the task's kind, its label columns (and
    for TAD the snippet length that places its segments), the settings and the training constants."""
    digest = hashlib.blake2b(digest_size=20)
    snippet = snippet_frames(train) if task == "tad" else None
    settings = (task, inputs, seed, sorted(hyper.items()), vocabulary, snippet, HEAD_STEPS, HEAD_LR, HEAD_BATCH)
    digest.update(repr(settings).encode())
    for a in train.kind(_spec(task).kind):
        a = np.ascontiguousarray(a)
        digest.update(f"{a.shape}{a.dtype}".encode())
        digest.update(a.tobytes())
    for column in LABEL_COLUMNS[task]:
        digest.update(repr(train.records[column].tolist()).encode())
    return digest.hexdigest()


def _train_head(
    task: str, train: FeatureSet, hyper: dict, seed: int, vocabulary: list[str] | None, inputs: str
) -> FittedHead:
    spec = _spec(task)
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
