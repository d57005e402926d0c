"""``fisher``: publish only the seen tasks' discriminant directions, with appearance as nuisance.

For each seen task the method finds the directions that separate its classes (AR actions, TAD
snippet classes with background, AD snippets of anomalous against normal videos) relative to a
nuisance scatter: the task's own within-class scatter plus ``fisher.static_weight`` times the
scatter of the static clips (one frame tiled: appearance without motion, so directions along
which appearance varies count as noise; no private label is read), plus a ``fisher.shrinkage``
share of the identity. The code is the features' coordinates along those directions (generalised
eigenvectors, scaled to unit nuisance variance): (n_actions - 1) + n_tad_classes + 1 numbers.

It is one fixed linear map: deterministic (every release identical, so averaging releases gains
an attacker nothing), and a clip's output depends on that clip alone.
"""

from __future__ import annotations

import time

import numpy as np

from latentanon.errors import DataError, ModelError
from latentanon.methods.base import Method
from latentanon.methods.config import TrainConfig

TASK_SETS = {"ar": "actions", "tad": "untrimmed", "ad": "anomaly"}


def scatter(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Sum over rows of the outer product of each row minus its group's mean."""
    centred = np.array(x, dtype=np.float64)
    for g in np.unique(groups):
        rows = groups == g
        centred[rows] -= centred[rows].mean(axis=0)
    return centred.T @ centred


def between_scatter(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Sum over groups of (group size) x outer product of the group mean minus the grand mean."""
    grand = x.mean(axis=0)
    out = np.zeros((x.shape[1], x.shape[1]))
    for g in np.unique(groups):
        rows = groups == g
        diff = x[rows].mean(axis=0) - grand
        out += rows.sum() * np.outer(diff, diff)
    return out


def discriminant_directions(x: np.ndarray, groups: np.ndarray, nuisance: np.ndarray) -> np.ndarray:
    """(d, n_groups - 1) generalised eigenvectors of the between-group scatter against the
    ``nuisance`` covariance, largest first, each of unit nuisance variance."""
    from scipy.linalg import eigh

    n_groups = len(np.unique(groups))
    between = between_scatter(x, groups) / len(x)
    values, vectors = eigh(between, nuisance)
    order = np.argsort(-values, kind="stable")[: max(n_groups - 1, 0)]
    return vectors[:, order]


class FisherMethod(Method):
    """Label-free (task labels and static clips only); deterministic; a linear map per clip."""

    needs_private_labels = False
    stochastic = False

    def __init__(self, name: str, train: TrainConfig = TrainConfig()):
        super().__init__(name, train)
        self.config = train.fisher
        if not self.config.shrinkage > 0:
            raise ModelError(f"method {name}: train.fisher.shrinkage must be > 0, got {self.config.shrinkage}")
        if not self.config.static_weight >= 0:
            raise ModelError(f"method {name}: train.fisher.static_weight must be >= 0, got {self.config.static_weight}")
        self.mean: np.ndarray | None = None
        self.projection: np.ndarray | None = None
        self.tasks: tuple[str, ...] = ()

    @property
    def output_dim(self) -> int | None:
        return None if self.projection is None else int(self.projection.shape[1])

    def seen_tasks(self) -> tuple[str, ...]:
        return tuple(t for t in TASK_SETS if getattr(self.train.tasks, t) > 0)

    @classmethod
    def suggest(cls, trial, name, train, tune):
        """Searches the static clips' weight in the nuisance (tune.fisher_static_weight_range)."""
        from dataclasses import replace

        from latentanon.methods.base import search_range

        weight = trial.suggest_float(
            "fisher_static_weight", *search_range(tune, "fisher_static_weight_range"), log=True
        )
        return name, replace(train, fisher=replace(train.fisher, static_weight=weight))

    def _task_rows(self, task: str, fs) -> tuple[np.ndarray, np.ndarray]:
        """Rows and class ids of one task's train split."""
        from latentanon.tasks.annotations import tad_targets, tad_vocabulary

        if task == "ar":
            items = fs.kind("clips")
            labels = fs.records["label_id"].to_numpy(dtype=np.int64)
            groups = [np.full(len(a), y) for a, y in zip(items, labels)]
        elif task == "tad":
            items = fs.kind("snippets")
            vocabulary = tad_vocabulary(fs)
            if not vocabulary:
                raise DataError(f"fisher method: feature set {fs.name!r} has no action segments in its train split")
            groups = tad_targets(fs, vocabulary)
        else:
            items = fs.kind("snippets")
            flags = fs.records["anomaly"].to_numpy(dtype=np.int64)
            groups = [np.full(len(a), y) for a, y in zip(items, flags)]
        x = np.concatenate([np.asarray(a, np.float64) for a in items if len(a)])
        return x, np.concatenate([g for g, a in zip(groups, items) if len(a)])

    def _fit(self, sets, seed, checkpoint_dir) -> None:
        assert self.dim is not None  # fit() sets it before _fit
        started = time.perf_counter()
        cfg = self.config
        tasks = tuple(t for t in self.seen_tasks() if TASK_SETS[t] in sets)
        if not tasks:
            raise DataError(
                f"fisher method: no seen task's feature set among {sorted(sets)} "
                f"(needs {', '.join(TASK_SETS[t] for t in self.seen_tasks())})"
            )
        train = {t: sets[TASK_SETS[t]].split("train") for t in tasks}
        rows = {t: self._task_rows(t, fs) for t, fs in train.items()}
        stacked = np.concatenate([x for x, _ in rows.values()])
        self.mean = stacked.mean(axis=0)
        scale = stacked.std(axis=0) + 1e-6
        statics = [
            np.asarray(a, np.float64)
            for fs in sets.values()
            if "static" in fs.arrays
            for a in fs.split("train").kind("static")
            if len(a)
        ]
        static_cov = np.zeros((self.dim, self.dim))
        if statics and cfg.static_weight > 0:
            s = (np.concatenate(statics) - self.mean) / scale
            static_cov = np.cov(s, rowvar=False)
        directions, info = [], {}
        for task, (x, groups) in rows.items():
            z = (x - self.mean) / scale
            within = scatter(z, groups) / len(z)
            nuisance = within + cfg.static_weight * static_cov
            nuisance += cfg.shrinkage * np.trace(nuisance) / self.dim * np.eye(self.dim)
            found = discriminant_directions(z, groups, nuisance)
            directions.append(found)
            info[task] = {"classes": int(len(np.unique(groups))), "directions": int(found.shape[1])}
        self.projection = (np.concatenate(directions, axis=1) / scale[:, None]).astype(np.float64)
        self.tasks = tasks
        self.info.update(
            {
                "seen_tasks": list(tasks),
                "directions": info,
                "code_dim": self.output_dim,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )

    def _transform_kind(self, kind, items, ids):
        return [((np.asarray(a, np.float64) - self.mean) @ self.projection).astype(np.float32) for a in items]

    def state(self):
        return {"mean": self.mean, "projection": self.projection}

    def set_state(self, state) -> None:
        self.mean = np.asarray(state["mean"], np.float64)
        self.projection = np.asarray(state["projection"], np.float64)
