"""Privacy attackers: predict private attributes from (anonymized) features.

An attacker is trained with private labels on the train split, its kind and hyper-parameters are
chosen per attribute on the validation split only, and it is scored once on test: class-wise AP
over every class of every attribute (cMAP) next to the chance level of the test labels.
Attackers learn from single clips; a video (or image) is scored with its clips' softmax averaged.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from latentanon.errors import DataError
from latentanon.evaluation import metrics
from latentanon.features.featureset import FeatureSet

ATTRIBUTES = ("skin_tone", "gender", "clothing", "face")


@dataclass(frozen=True)
class AttackerSpec:
    name: str               # "linear" (multinomial logistic regression) or "mlp" (2 layers)
    hidden: int = 0         # width of the MLP's hidden layer; 0 for linear
    weight_decay: float = 1e-3
    lr: float = 1e-2
    steps: int = 200        # full-batch optimisation steps


# Searched per attribute on validation; the strongest honest attacker wins.
ATTACKER_GRID = (
    AttackerSpec("linear", 0, 1e-4, lr=2e-2, steps=150),
    AttackerSpec("linear", 0, 1e-2, lr=2e-2, steps=150),
    AttackerSpec("mlp", 256, 1e-3, lr=3e-3, steps=200),
)
# The tuner's objective: one fixed attacker, no search, so trials stay cheap and comparable.
VALIDATION_ATTACKER = AttackerSpec("mlp", 128, 1e-3, lr=3e-3, steps=150)


@dataclass
class AttackData:
    """Clip-level inputs and video-level labels of one split."""

    x: np.ndarray                   # (n_clips, d)
    video: np.ndarray               # (n_clips,) index of the clip's video
    labels: dict[str, np.ndarray]   # attribute -> (n_videos,) class id, -1 where unknown

    @property
    def n_videos(self) -> int:
        return int(next(iter(self.labels.values())).shape[0]) if self.labels else 0


def _as_sets(sets: FeatureSet | Sequence[FeatureSet]) -> list[FeatureSet]:
    return [sets] if isinstance(sets, FeatureSet) else list(sets)


def attack_data(sets: FeatureSet | Sequence[FeatureSet], attributes: Sequence[str], kind: str = "static") -> AttackData:
    """Stack the ``kind`` clips of every video that has them, with its attribute labels."""
    xs, videos, labels = [], [], {a: [] for a in attributes}
    offset = 0
    for fs in _as_sets(sets):
        if kind not in fs.arrays or len(fs) == 0:
            continue
        missing = [a for a in attributes if a not in fs.records.columns]
        if missing:
            raise DataError(f"feature set {fs.name!r}: no private label column(s) {missing} for the attacker")
        for i, clips in enumerate(fs.kind(kind)):
            xs.append(np.asarray(clips, dtype=np.float32).reshape(-1, fs.dim))
            videos.append(np.full(xs[-1].shape[0], offset + i))
        for a in attributes:
            column = fs.records[a].to_numpy(dtype=np.float64, na_value=np.nan)
            labels[a].append(np.where(np.isfinite(column), column, -1).astype(np.int64))
        offset += len(fs)
    if not xs:
        raise DataError(f"no {kind!r} features in feature set(s) {[fs.name for fs in _as_sets(sets)]}")
    return AttackData(
        x=np.concatenate(xs),
        video=np.concatenate(videos),
        labels={a: np.concatenate(v) for a, v in labels.items()},
    )


class _MultiHeadAttacker(nn.Module):
    """A shared body (nothing for linear, one hidden ReLU layer for the MLP) and one head per attribute.

    The heads share one output layer whose columns are split per attribute (fewer small ops).
    """

    def __init__(self, dim: int, n_classes: Sequence[int], hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()) if hidden else nn.Identity()
        self.out = nn.Linear(hidden or dim, int(sum(n_classes)))
        self.n_classes = [int(c) for c in n_classes]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(self.out(self.body(x)), self.n_classes, dim=1))


@dataclass
class FittedAttacker:
    spec: AttackerSpec
    attributes: tuple[str, ...]
    model: _MultiHeadAttacker
    mean: np.ndarray
    std: np.ndarray

    @torch.no_grad()
    def video_probabilities(self, data: AttackData) -> dict[str, np.ndarray]:
        """Per attribute, (n_videos, n_classes) softmax averaged over each video's clips."""
        x = torch.from_numpy((data.x - self.mean) / self.std)
        out = {}
        counts = np.bincount(data.video, minlength=data.n_videos).astype(np.float64)[:, None]
        for attribute, logits in zip(self.attributes, self.model(x)):
            probs = F.softmax(logits, dim=1).double().numpy()
            summed = np.zeros((data.n_videos, probs.shape[1]))
            np.add.at(summed, data.video, probs)
            out[attribute] = summed / np.maximum(counts, 1)
        return out


def fit_attacker(data: AttackData, n_classes: dict[str, int], spec: AttackerSpec, seed: int) -> FittedAttacker:
    """Full-batch AdamW on standardised clip features; each clip carries its video's labels."""
    attributes = tuple(n_classes)
    mean = data.x.mean(axis=0)
    std = data.x.std(axis=0) + 1e-6
    x = torch.from_numpy(((data.x - mean) / std).astype(np.float32))
    targets = [torch.from_numpy(data.labels[a][data.video]) for a in attributes]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = _MultiHeadAttacker(x.shape[1], [n_classes[a] for a in attributes], spec.hidden)
    finally:
        torch.random.set_rng_state(generator_state)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    trained = [(i, t) for i, t in enumerate(targets) if (t >= 0).any()]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny full-batch problems: extra threads only add contention
    try:
        for _ in range(spec.steps):
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = sum(F.cross_entropy(logits[i], t, ignore_index=-1) for i, t in trained)
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return FittedAttacker(spec, attributes, model.eval(), mean.astype(np.float32), std.astype(np.float32))


def _attribute_aps(labels: np.ndarray, probabilities: np.ndarray) -> dict[int, float]:
    """AP of every class present in ``labels``; classes beyond the attacker's head score zero."""
    known = labels >= 0
    labels, probabilities = labels[known], probabilities[known]
    present = sorted(int(c) for c in np.unique(labels))
    width = max(present[-1] + 1, probabilities.shape[1]) if present else probabilities.shape[1]
    padded = np.zeros((labels.shape[0], width))
    padded[:, : probabilities.shape[1]] = probabilities
    return metrics.class_average_precisions(labels, padded[:, present], present)


def _attribute_map(labels: np.ndarray, probabilities: np.ndarray) -> float:
    aps = [v for v in _attribute_aps(labels, probabilities).values() if np.isfinite(v)]
    return float(np.mean(aps)) if aps else float("nan")


def _class_counts(*splits: AttackData) -> dict[str, int]:
    """Head width per attribute from the given (train/val) splits only: test never shapes a model."""
    attributes = splits[0].labels.keys()
    return {a: int(max(int(s.labels[a].max(initial=-1)) for s in splits)) + 1 for a in attributes}


def _usable_attributes(attributes: Sequence[str], n_classes: dict[str, int]) -> tuple[str, ...]:
    return tuple(a for a in attributes if n_classes[a] >= 2)


def attack(
    train: FeatureSet | Sequence[FeatureSet],
    val: FeatureSet | Sequence[FeatureSet],
    test: FeatureSet | Sequence[FeatureSet],
    attributes: Sequence[str] = ATTRIBUTES,
    seed: int = 0,
    kind: str = "static",
    grid: Sequence[AttackerSpec] = ATTACKER_GRID,
) -> dict:
    """Linear and MLP attackers, chosen per attribute on val, scored on test (cMAP and chance)."""
    train_data = attack_data(train, attributes, kind)
    val_data = attack_data(val, attributes, kind)
    test_data = attack_data(test, attributes, kind)
    n_classes = _class_counts(train_data, val_data)
    usable = _usable_attributes(attributes, n_classes)
    if not usable:
        raise DataError(f"attack: no attribute among {list(attributes)} has two classes in train/val")
    n_classes = {a: n_classes[a] for a in usable}

    val_scores: dict[str, dict[int, float]] = {a: {} for a in usable}
    test_probabilities: dict[str, dict[int, np.ndarray]] = {a: {} for a in usable}
    for index, spec in enumerate(grid):
        fitted = fit_attacker(train_data, n_classes, spec, seed)
        val_probs = fitted.video_probabilities(val_data)
        test_probs = fitted.video_probabilities(test_data)
        for a in usable:
            val_scores[a][index] = _attribute_map(val_data.labels[a], val_probs[a])
            test_probabilities[a][index] = test_probs[a]

    per_attribute, all_aps, chance_labels = {}, {}, {}
    for a in usable:
        # Selection reads validation scores only; NaN (no val positives) never wins.
        chosen = max(val_scores[a], key=lambda i: (np.nan_to_num(val_scores[a][i], nan=-1.0), -i))
        labels = test_data.labels[a]
        aps = _attribute_aps(labels, test_probabilities[a][chosen])
        known = labels[labels >= 0]
        chance_labels[a] = known
        all_aps[a] = aps
        per_attribute[a] = {
            "attacker": asdict(grid[chosen]),
            "val_map": val_scores[a][chosen],
            "validation": {f"{grid[i].name}:{grid[i].hidden}:{grid[i].weight_decay:g}": v for i, v in val_scores[a].items()},
            "ap": {str(c): v for c, v in aps.items()},
            "map": float(np.nanmean(list(aps.values()))) if aps else float("nan"),
            "chance": metrics.chance_cmap({a: known}, {a: sorted(int(c) for c in np.unique(known))}),
        }
    classes = {a: sorted(int(c) for c in np.unique(v)) for a, v in chance_labels.items()}
    return {
        "kind": kind,
        "seed": seed,
        "attributes": per_attribute,
        "cmap": metrics.cmap(all_aps),
        "chance": metrics.chance_cmap(chance_labels, classes),
        "n_train_clips": int(train_data.x.shape[0]),
        "n_test_videos": test_data.n_videos,
    }


def validation_leakage(
    train: FeatureSet | Sequence[FeatureSet],
    val: FeatureSet | Sequence[FeatureSet],
    seed: int = 0,
    attributes: Sequence[str] = ATTRIBUTES,
) -> float:
    """cMAP on val static clips of one fixed-hyper-parameter attacker fitted on train (lower = more private)."""
    train_data = attack_data(train, attributes, "static")
    val_data = attack_data(val, attributes, "static")
    n_classes = _class_counts(train_data, val_data)
    usable = _usable_attributes(attributes, n_classes)
    if not usable:
        raise DataError(f"validation_leakage: no attribute among {list(attributes)} has two classes")
    fitted = fit_attacker(train_data, {a: n_classes[a] for a in usable}, VALIDATION_ATTACKER, seed)
    probabilities = fitted.video_probabilities(val_data)
    return metrics.cmap({a: _attribute_aps(val_data.labels[a], probabilities[a]) for a in usable})
