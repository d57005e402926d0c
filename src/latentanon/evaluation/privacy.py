"""Privacy attackers: predict private attributes from (anonymized) features.

An attacker is trained with private labels on the train split, its kind and hyper-parameters are
chosen per attribute on the validation split only, and it is scored once on test: class-wise AP
over every class of every attribute (cMAP) next to the chance level of the test labels.
Attackers learn from single clips; a video (or image) is scored with its clips' softmax averaged.
With ``per_video_mean`` they learn from and score each video's mean feature instead: what an
attacker reads when a user shares a whole video, and noise drawn per clip averages away.
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
from latentanon.tasks.private import ATTRIBUTES, AttackData, attack_data


@dataclass(frozen=True)
class AttackerSpec:
    name: str  # "linear" (multinomial logistic regression, L-BFGS) or "mlp"
    hidden: int = 0  # width of each MLP hidden layer; 0 for linear
    weight_decay: float = 1e-3
    lr: float = 1e-2
    steps: int = 200  # full-batch steps (MLP: at most, early-stopped on val; linear: L-BFGS iterations)
    whiten: bool = False  # ZCA-whitened inputs (decorrelated) instead of per-dimension standardised
    depth: int = 1  # hidden layers of the MLP


# Searched per attribute on validation; the strongest honest attacker wins. Whitened inputs find
# leaks along low-variance directions that standardised inputs under-weight.
ATTACKER_GRID = (
    AttackerSpec("linear", 0, 1e-3, steps=60),
    AttackerSpec("linear", 0, 1e-2, steps=60),
    AttackerSpec("linear", 0, 1e-3, steps=60, whiten=True),
    AttackerSpec("mlp", 128, 1e-3, lr=5e-3, steps=200),
    AttackerSpec("mlp", 128, 1e-3, lr=5e-3, steps=200, whiten=True),
    AttackerSpec("mlp", 256, 1e-3, lr=3e-3, steps=250, depth=2),  # the larger MLP
)
# The tuner's objective: one fixed attacker, no search, so trials stay cheap and comparable.
VALIDATION_ATTACKER = AttackerSpec("mlp", 128, 1e-3, lr=3e-3, steps=150)
EARLY_STOP_EVERY = 25  # MLP attackers: val loss checked this often, stop after 2 checks without gain
WHITEN_SHRINK = 1e-2  # ZCA: eigenvalues floored at this share of their mean (no noise blow-up)


def spec_label(spec: AttackerSpec) -> str:
    tags = [
        spec.name,
        str(spec.hidden) if spec.hidden else "",
        f"wd{spec.weight_decay:g}",
        "zca" if spec.whiten else "",
        f"x{spec.depth}" if spec.depth > 1 else "",
    ]
    return ":".join(t for t in tags if t)


class _MultiHeadAttacker(nn.Module):
    """A shared body (nothing for linear, ReLU hidden layers for the MLP) and one head per attribute.

    The heads share one output layer whose columns are split per attribute (fewer small ops).
    """

    def __init__(self, dim: int, n_classes: Sequence[int], hidden: int, depth: int = 1):
        super().__init__()
        layers, width = [], dim
        for _ in range(depth if hidden else 0):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers) if layers else nn.Identity()
        self.out = nn.Linear(width, int(sum(n_classes)))
        self.n_classes = [int(c) for c in n_classes]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(self.out(self.body(x)), self.n_classes, dim=1))


def input_transform(x: np.ndarray, whiten: bool) -> tuple[np.ndarray, np.ndarray]:
    """(mean, projection) fitted on train inputs: per-dimension standardisation, or ZCA whitening."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    if not whiten:
        return mean, np.diag(1.0 / (x.std(axis=0) + 1e-6))
    centred = x - mean
    covariance = centred.T @ centred / max(len(x) - 1, 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    floor = WHITEN_SHRINK * max(float(eigenvalues.mean()), 1e-12)
    scale = 1.0 / np.sqrt(np.maximum(eigenvalues, 0.0) + floor)
    return mean, (eigenvectors * scale) @ eigenvectors.T


@dataclass
class FittedAttacker:
    spec: AttackerSpec
    attributes: tuple[str, ...]
    model: _MultiHeadAttacker
    mean: np.ndarray
    projection: np.ndarray

    def inputs(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - self.mean) @ self.projection).astype(np.float32))

    @torch.no_grad()
    def video_probabilities(self, data: AttackData) -> dict[str, np.ndarray]:
        """Per attribute, (n_videos, n_classes) softmax averaged over each video's clips."""
        x = self.inputs(data.x)
        out = {}
        counts = np.bincount(data.video, minlength=data.n_videos).astype(np.float64)[:, None]
        for attribute, logits in zip(self.attributes, self.model(x)):
            probs = F.softmax(logits, dim=1).double().numpy()
            summed = np.zeros((data.n_videos, probs.shape[1]))
            np.add.at(summed, data.video, probs)
            out[attribute] = summed / np.maximum(counts, 1)
        return out


def _loss(model, x, targets) -> torch.Tensor:
    logits = model(x)
    # a tensor start keeps the result a tensor (0.0 + loss is exact, so the value is unchanged)
    return sum((F.cross_entropy(logits[i], t, ignore_index=-1) for i, t in targets), torch.zeros(()))


def fit_attacker(
    data: AttackData, n_classes: dict[str, int], spec: AttackerSpec, seed: int, val: AttackData | None = None
) -> FittedAttacker:
    """Fit on clip features (each clip carries its video's labels), inputs standardised or whitened
    with train statistics. Linear: L-BFGS to convergence on the L2-penalised loss. MLP: full-batch
    AdamW, early-stopped on the val loss when ``val`` is given."""
    attributes = tuple(n_classes)
    mean, projection = input_transform(data.x, spec.whiten)
    x = torch.from_numpy(((data.x - mean) @ projection).astype(np.float32))
    targets = [
        (i, t) for i, t in enumerate(torch.from_numpy(data.labels[a][data.video]) for a in attributes) if (t >= 0).any()
    ]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = _MultiHeadAttacker(x.shape[1], [n_classes[a] for a in attributes], spec.hidden, spec.depth)
    finally:
        torch.random.set_rng_state(generator_state)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny full-batch problems: extra threads only add contention
    try:
        if spec.name == "linear":
            lbfgs = torch.optim.LBFGS(
                model.parameters(), lr=1.0, max_iter=spec.steps, history_size=20, line_search_fn="strong_wolfe"
            )
            penalty = spec.weight_decay / 2

            def closure() -> torch.Tensor:
                lbfgs.zero_grad(set_to_none=True)
                loss = _loss(model, x, targets) + penalty * model.out.weight.pow(2).sum()
                loss.backward()
                return loss

            lbfgs.step(closure)
        else:
            adamw = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
            val_x = val_targets = None
            if val is not None:
                val_x = torch.from_numpy(((val.x - mean) @ projection).astype(np.float32))
                val_targets = [
                    (i, t)
                    for i, t in enumerate(torch.from_numpy(val.labels[a][val.video]) for a in attributes)
                    if (t >= 0).any()
                ]
            best, best_state, stale = float("inf"), None, 0
            for step in range(spec.steps):
                adamw.zero_grad(set_to_none=True)
                _loss(model, x, targets).backward()
                adamw.step()
                if val_targets and (step + 1) % EARLY_STOP_EVERY == 0:
                    with torch.no_grad():
                        current = float(_loss(model, val_x, val_targets))
                    if current < best - 1e-4:
                        best, stale = current, 0
                        best_state = {k: v.clone() for k, v in model.state_dict().items()}
                    else:
                        stale += 1
                        if stale >= 2:
                            break
            if best_state is not None:
                model.load_state_dict(best_state)
    finally:
        torch.set_num_threads(threads)
    return FittedAttacker(spec, attributes, model.eval(), mean.astype(np.float64), projection.astype(np.float64))


def mean_per_video(data: AttackData) -> AttackData:
    """One row per video: the mean of its clips (videos without clips are dropped with their labels)."""
    counts = np.bincount(data.video, minlength=data.n_videos)
    present = np.flatnonzero(counts > 0)
    sums = np.zeros((data.n_videos, data.x.shape[1]), dtype=np.float64)
    np.add.at(sums, data.video, data.x)
    means = (sums[present] / counts[present, None]).astype(np.float32)
    return AttackData(x=means, video=np.arange(len(present)), labels={a: v[present] for a, v in data.labels.items()})


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
    per_video_mean: bool = False,
) -> dict:
    """Linear and MLP attackers, chosen per attribute on val, scored on test (cMAP and chance).
    ``per_video_mean``: trained and scored on each video's mean ``kind`` feature."""
    train_data = attack_data(train, attributes, kind)
    val_data = attack_data(val, attributes, kind)
    test_data = attack_data(test, attributes, kind)
    if per_video_mean:
        train_data, val_data, test_data = (mean_per_video(d) for d in (train_data, val_data, test_data))
    n_classes = _class_counts(train_data, val_data)
    usable = _usable_attributes(attributes, n_classes)
    if not usable:
        raise DataError(f"attack: no attribute among {list(attributes)} has two classes in train/val")
    n_classes = {a: n_classes[a] for a in usable}

    val_scores: dict[str, dict[int, float]] = {a: {} for a in usable}
    test_probabilities: dict[str, dict[int, np.ndarray]] = {a: {} for a in usable}
    for index, spec in enumerate(grid):
        fitted = fit_attacker(train_data, n_classes, spec, seed, val_data)
        val_probs = fitted.video_probabilities(val_data)
        test_probs = fitted.video_probabilities(test_data)
        for a in usable:
            val_scores[a][index] = _attribute_map(val_data.labels[a], val_probs[a])
            test_probabilities[a][index] = test_probs[a]

    per_attribute, all_aps, chance_labels, chosen_by = {}, {}, {}, {}
    for a in usable:
        # Selection reads validation scores only; NaN (no val positives) never wins.
        chosen = max(val_scores[a], key=lambda i: (np.nan_to_num(val_scores[a][i], nan=-1.0), -i))
        chosen_by[a] = chosen
        labels = test_data.labels[a]
        aps = _attribute_aps(labels, test_probabilities[a][chosen])
        known = labels[labels >= 0]
        chance_labels[a] = known
        all_aps[a] = aps
        per_attribute[a] = {
            "attacker": asdict(grid[chosen]),
            "val_map": val_scores[a][chosen],
            "validation": {spec_label(grid[i]): v for i, v in val_scores[a].items()},
            "ap": {str(c): v for c, v in aps.items()},
            "map": float(np.nanmean(list(aps.values()))) if aps else float("nan"),
            "chance": metrics.chance_cmap({a: known}, {a: sorted(int(c) for c in np.unique(known))}),
        }
    classes = {a: sorted(int(c) for c in np.unique(v)) for a, v in chance_labels.items()}
    return {
        "kind": kind,
        "seed": seed,
        "per_video_mean": per_video_mean,
        "attributes": per_attribute,
        "cmap": metrics.cmap(all_aps),
        "chance": metrics.chance_cmap(chance_labels, classes),
        "n_train_clips": int(train_data.x.shape[0]),
        "n_test_videos": test_data.n_videos,
        # per test item, for paired bootstrap intervals (arrays: kept out of the JSON reports)
        "items": {
            "labels": {a: test_data.labels[a] for a in usable},
            "probabilities": {a: test_probabilities[a][chosen_index] for a, chosen_index in chosen_by.items()},
        },
    }


def validation_leakage(
    train: FeatureSet | Sequence[FeatureSet],
    val: FeatureSet | Sequence[FeatureSet],
    seed: int = 0,
    attributes: Sequence[str] = ATTRIBUTES,
    kind: str = "static",
) -> float:
    """cMAP on val ``kind`` clips of one fixed-hyper-parameter attacker fitted on train (lower = more private)."""
    train_data = attack_data(train, attributes, kind)
    val_data = attack_data(val, attributes, kind)
    n_classes = _class_counts(train_data, val_data)
    usable = _usable_attributes(attributes, n_classes)
    if not usable:
        raise DataError(f"validation_leakage: no attribute among {list(attributes)} has two classes")
    fitted = fit_attacker(train_data, {a: n_classes[a] for a in usable}, VALIDATION_ATTACKER, seed)
    probabilities = fitted.video_probabilities(val_data)
    return metrics.cmap({a: _attribute_aps(val_data.labels[a], probabilities[a]) for a in usable})


def validation_chance(
    val: FeatureSet | Sequence[FeatureSet], attributes: Sequence[str] = ATTRIBUTES, kind: str = "static"
) -> float:
    """cMAP of an uninformative attacker on the val ``kind`` clips (the floor of ``validation_leakage``)."""
    val_data = attack_data(val, attributes, kind)
    known = {a: val_data.labels[a][val_data.labels[a] >= 0] for a in attributes}
    known = {a: v for a, v in known.items() if len(np.unique(v)) >= 2}
    if not known:
        raise DataError(f"validation_chance: no attribute among {list(attributes)} has two classes on val")
    return metrics.chance_cmap(known, {a: sorted(int(c) for c in np.unique(v)) for a, v in known.items()})


# ----------------------------------------------------------------------------- the paper's protocol

PAPER_LOGIT_SCALE = 10.0  # L2-normalised logits, times this scale before the softmax
PAPER_EPOCHS = 100
PAPER_EVAL_EVERY = 10


def paper_protocol_attack(
    train: FeatureSet | Sequence[FeatureSet],
    test: FeatureSet | Sequence[FeatureSet],
    attributes: Sequence[str] = ATTRIBUTES,
    seed: int = 0,
    kind: str = "static",
    epochs: int = PAPER_EPOCHS,
) -> dict:
    """The paper's attacker, reported beside the strong protocol and never instead of it: a linear
    classifier on unstandardised inputs with L2-normalised logits, trained with Adam, and scored
    at its best TEST epoch (selection on test, so optimistic for the attacker on some epochs and
    weak on others: it is what the paper's numbers mean)."""
    train_data, test_data = attack_data(train, attributes, kind), attack_data(test, attributes, kind)
    n_classes = _class_counts(train_data)
    usable = _usable_attributes(attributes, n_classes)
    if not usable:
        raise DataError(f"paper protocol: no attribute among {list(attributes)} has two classes in train")
    x = torch.from_numpy(train_data.x.astype(np.float32))
    x_test = torch.from_numpy(test_data.x.astype(np.float32))
    targets = [(i, torch.from_numpy(train_data.labels[a][train_data.video])) for i, a in enumerate(usable)]
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = _MultiHeadAttacker(x.shape[1], [n_classes[a] for a in usable], 0)
    finally:
        torch.random.set_rng_state(state)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    counts = np.bincount(test_data.video, minlength=test_data.n_videos).astype(np.float64)[:, None]
    best = {"cmap": -1.0, "epoch": 0}
    for epoch in range(1, epochs + 1):
        optimizer.zero_grad(set_to_none=True)
        logits = [PAPER_LOGIT_SCALE * F.normalize(lg, dim=1) for lg in model(x)]
        sum(
            (F.cross_entropy(logits[i], t, ignore_index=-1) for i, t in targets if (t >= 0).any()), torch.zeros(())
        ).backward()
        optimizer.step()
        if epoch % PAPER_EVAL_EVERY and epoch != epochs:
            continue
        with torch.no_grad():
            aps = {}
            for a, lg in zip(usable, model(x_test)):
                probs = F.softmax(PAPER_LOGIT_SCALE * F.normalize(lg, dim=1), dim=1).double().numpy()
                summed = np.zeros((test_data.n_videos, probs.shape[1]))
                np.add.at(summed, test_data.video, probs)
                aps[a] = _attribute_aps(test_data.labels[a], summed / np.maximum(counts, 1))
        value = metrics.cmap(aps)
        if value > best["cmap"]:
            best = {"cmap": value, "epoch": epoch}
    known = {a: test_data.labels[a][test_data.labels[a] >= 0] for a in usable}
    chance = metrics.chance_cmap(known, {a: sorted(int(c) for c in np.unique(v)) for a, v in known.items()})
    return {
        "kind": kind,
        "seed": seed,
        "cmap": best["cmap"],
        "best_test_epoch": best["epoch"],
        "chance": chance,
        "protocol": "linear on unstandardised inputs, L2-normalised logits, best test epoch",
    }
