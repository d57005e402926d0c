"""``distil``: the published code is what the seen tasks' strongest heads read out of the raw
features, and nothing else.

For each seen task (AR, TAD, AD) the method fits the project's own utility head on the raw train
features (``latentanon.tasks.fitting.fit_head``), picking its input form and hyper-parameters on
val exactly as evaluation picks a head (``score_task``), and publishes, per clip or snippet, the
heads' outputs side by side: AR class logits, TAD per-snippet class logits (background included),
the AD anomaly logit. ``distil.outputs`` "posteriors" publishes softmax / sigmoid outputs instead
(what the floor attacker reads), of the logits divided by ``distil.temperature``: a posterior
saturates where a head is sure, which removes the within-class detail (appearance) that logits
keep, and a temperature below 1 saturates more of them. No private label is read.

The code is a deterministic function of each video's features: every release of a store is the
same, so averaging releases, clips or snippets gains an attacker nothing the code did not already
give. A head reads one video's sequence at a time (TAD and AD are temporal convolutions), so a
clip's output depends on its own video only, never on the batch. ``distil.step`` > 0 rounds
the published code to a grid of that step (a coarser code, still identical on every release);
``distil.ar_step`` / ``tad_step`` / ``ad_step`` give a task's part a grid of its own. ``distil.ensemble`` > 1 averages that many
raw heads per task (the seed ensemble evaluation reads raw through, distilled into one code), and
``distil.per_kind`` fills each kind's code with the heads of the tasks that read that kind only
(AR on clips, TAD and AD on snippets): a head never sees another task's block, which it would
overfit, and a snippet publishes no action posteriors.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from latentanon.errors import DataError, ModelError
from latentanon.methods.base import Method
from latentanon.methods.config import TrainConfig
from latentanon.tasks.heads import ADHead, ARHead, TADHead

TASK_SETS = {"ar": "actions", "tad": "untrimmed", "ad": "anomaly"}
CLIP_VIEWS = {"static": "clips"}  # a static clip is read as a clip (by AR, and by attackers)


def _affine_reader(reader) -> tuple[np.ndarray, np.ndarray]:
    """(mean, projection) of a fitted head input form: both forms are x -> (x - mean) @ projection."""
    if hasattr(reader, "projection"):
        return np.asarray(reader.mean, np.float64), np.asarray(reader.projection, np.float64)
    return np.asarray(reader.mean, np.float64), np.diag(1.0 / np.asarray(reader.std, np.float64))


def _strongest_head(task: str, train, val, seed: int):
    """The head evaluation would keep for ``task`` on these raw features: the input form whose
    default head scores best on val, then the grid's best in that form (``score_task``'s rule)."""
    from latentanon.tasks.annotations import tad_vocabulary
    from latentanon.tasks.fitting import evaluate_head, fit_head
    from latentanon.tasks.head_inputs import HEAD_INPUTS
    from latentanon.tasks.specs import TASK_SPECS

    spec = TASK_SPECS[task]
    vocabulary = tad_vocabulary(train) if task == "tad" else None
    tried = []
    defaults = {}
    for form in HEAD_INPUTS:
        fitted = fit_head(task, train, spec.grid[0], seed, vocabulary, form)
        defaults[form] = (evaluate_head(fitted, val), fitted)
        tried.append({"inputs": form, "hyper": dict(spec.grid[0]), "val": defaults[form][0]})
    form = max(HEAD_INPUTS, key=lambda f: defaults[f][0])
    best = (*defaults[form], dict(spec.grid[0]))
    for hyper in spec.grid[1:]:
        fitted = fit_head(task, train, hyper, seed, vocabulary, form)
        value = evaluate_head(fitted, val)
        tried.append({"inputs": form, "hyper": dict(hyper), "val": value})
        if value > best[0]:
            best = (value, fitted, dict(hyper))
    value, fitted, hyper = best
    return fitted, {"inputs": form, "hyper": hyper, "val": float(value), "tried": tried}


def _more_heads(task: str, train, chosen: dict, seed: int, ensemble: int) -> list:
    """The ensemble's other heads: the chosen head's input form and hyper-parameters, other seeds."""
    from latentanon.tasks.annotations import tad_vocabulary
    from latentanon.tasks.fitting import fit_head

    vocabulary = tad_vocabulary(train) if task == "tad" else None
    return [
        fit_head(task, train, chosen["hyper"], seed * 1000 + r, vocabulary, chosen["inputs"])
        for r in range(1, ensemble)
    ]


def _head_prefix(task: str, index: int) -> str:
    """State key prefix of a task's index-th head (the first keeps the single-head layout)."""
    return f"{task}." if index == 0 else f"{task}.{index}."


def _head_from_state(task: str, state: dict[str, np.ndarray], prefix: str) -> torch.nn.Module:
    """Rebuild a task head from its saved weights (its widths and kernel are in their shapes)."""
    weights = {k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith(prefix)}
    head: ARHead | TADHead | ADHead
    if task == "ar":
        n_classes, dim = weights["linear.weight"].shape
        head = ARHead(dim, n_classes)
    else:
        hidden, dim, kernel = weights["conv_in.weight"].shape
        outputs = weights["conv_out.weight"].shape[0]
        head = (
            TADHead(dim, outputs - 1, hidden=hidden, kernel=kernel)
            if task == "tad"
            else ADHead(dim, hidden=hidden, kernel=kernel)
        )
    head.load_state_dict(weights)
    return head.eval()


def _on_grid(values: np.ndarray, step: float) -> np.ndarray:
    return np.round(values / step) * step if step > 0 else values


class DistilMethod(Method):
    """Label-free (task labels only); deterministic; output width = sum of the heads' outputs."""

    needs_private_labels = False
    stochastic = False

    def __init__(self, name: str, train: TrainConfig = TrainConfig()):
        super().__init__(name, train)
        self.config = train.distil
        if self.config.outputs not in ("logits", "posteriors"):
            raise ModelError(
                f"method {name}: train.distil.outputs must be 'logits' or 'posteriors', got {self.config.outputs!r}"
            )
        if not self.config.temperature > 0:
            raise ModelError(f"method {name}: train.distil.temperature must be > 0, got {self.config.temperature}")
        if not self.config.step >= 0:
            raise ModelError(f"method {name}: train.distil.step must be >= 0, got {self.config.step}")
        for task in TASK_SETS:
            step = getattr(self.config, f"{task}_step")
            if step is not None and not step >= 0:
                raise ModelError(f"method {name}: train.distil.{task}_step must be >= 0, got {step}")
        if self.config.ensemble < 1:
            raise ModelError(f"method {name}: train.distil.ensemble must be >= 1, got {self.config.ensemble}")
        self.tasks: tuple[str, ...] = ()
        # per task: its heads (the one chosen on val first) and each head's input form
        self.heads: dict[str, list[torch.nn.Module]] = {}
        self.readers: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    @property
    def output_dim(self) -> int | None:
        if self.dim is None or not self.heads:
            return None
        return sum(self._width(t) for t in self.tasks)

    def _width(self, task: str) -> int:
        head = self.heads[task][0]
        if task == "ar":
            assert isinstance(head, ARHead)  # the ar head is always an ARHead
            return int(head.linear.out_features)
        assert isinstance(head, (TADHead, ADHead))  # the tad and ad heads end in a Conv1d
        return int(head.conv_out.out_channels)

    @classmethod
    def suggest(cls, trial, name, train, tune):
        """Searches the AR posteriors' grid (log-uniform in tune.distil_ar_step_range): they are
        what a clip publishes, so the static and moving scopes read them, and a coarser grid hides
        more of what the head is unsure about at some cost to AR. TAD and AD keep ``step``."""
        from dataclasses import replace

        from latentanon.methods.base import search_range

        step = trial.suggest_float("distil_ar_step", *search_range(tune, "distil_ar_step_range"), log=True)
        return name, replace(train, distil=replace(train.distil, ar_step=step))

    def seen_tasks(self) -> tuple[str, ...]:
        return tuple(t for t in TASK_SETS if getattr(self.train.tasks, t) > 0)

    # ------------------------------------------------------------------ fitting

    def _fit(self, sets, seed, checkpoint_dir) -> None:
        started = time.perf_counter()
        tasks = tuple(t for t in self.seen_tasks() if TASK_SETS[t] in sets)
        if not tasks:
            raise DataError(
                f"distil method: no seen task's feature set among {sorted(sets)} "
                f"(needs {', '.join(TASK_SETS[t] for t in self.seen_tasks())})"
            )
        chosen = {}
        for task in tasks:
            fs = sets[TASK_SETS[task]]
            train, val = fs.split("train"), fs.split("val")
            if not len(train) or not len(val):
                raise DataError(
                    f"distil method: feature set {fs.name!r} needs train and val rows to pick "
                    f"the {task} head (has {len(train)} train, {len(val)} val)"
                )
            fitted, chosen[task] = _strongest_head(task, train, val, seed)
            fitted = [fitted, *_more_heads(task, train, chosen[task], seed, self.config.ensemble)]
            self.heads[task] = [f.head.eval() for f in fitted]
            self.readers[task] = [_affine_reader(f.inputs) for f in fitted]
        self.tasks = tasks
        self.info.update(
            {
                "seen_tasks": list(tasks),
                "heads": chosen,
                "code_dim": self.output_dim,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )

    # ------------------------------------------------------------------ applying

    def blocks(self, kind: str) -> tuple[str, ...]:
        """The tasks whose heads fill ``kind``'s code (``distil.per_kind``); the others are zero."""
        if not self.config.per_kind:
            return self.tasks
        from latentanon.tasks.specs import TASK_SPECS

        reads = CLIP_VIEWS.get(kind, kind)
        readers = tuple(t for t in self.tasks if TASK_SPECS[t].kind == reads)
        return readers or self.tasks

    @torch.no_grad()
    def _code(self, sequence: np.ndarray, kind: str = "clips") -> np.ndarray:
        """One video's (T, d) features of ``kind`` -> its (T, k) code."""
        parts = []
        blocks = self.blocks(kind)
        for task in self.tasks:
            if task not in blocks:
                parts.append(np.zeros((len(sequence), self._width(task))))
                continue
            as_logit = self.config.outputs == "logits" or (task == "ad" and self.config.ad_logit)
            outputs = np.mean(
                [
                    self._head_outputs(task, head, reader, sequence, as_logit)
                    for head, reader in zip(self.heads[task], self.readers[task])
                ],
                axis=0,
            )
            if task == "ad" and as_logit:
                # the heads' scores are averaged as probabilities, published as their logit
                outputs = np.log(outputs) - np.log1p(-outputs) if self.config.outputs == "posteriors" else outputs
            parts.append(_on_grid(outputs, self._step(task)))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _head_outputs(self, task, head, reader, sequence, as_logit: bool) -> np.ndarray:
        """One head's (T, outputs) on one video: logits, or posteriors at the temperature (AD's
        score as a probability where its logit is published, so that heads average as scores)."""
        mean, projection = reader
        x = torch.from_numpy(((np.asarray(sequence, np.float64) - mean) @ projection).astype(np.float32))[None]
        mask = torch.ones(x.shape[:2], dtype=torch.bool)
        if task == "ar":
            logits = head(x)
        elif task == "tad":
            logits = head(x, mask)
        else:
            scores = head(x, mask).clamp(1e-6, 1 - 1e-6)
            if as_logit and self.config.outputs == "posteriors":
                return scores[0, :, None].double().numpy()
            logits = torch.logit(scores)[..., None]
        if not as_logit:
            logits = logits / self.config.temperature
            logits = torch.sigmoid(logits) if task == "ad" else logits.softmax(dim=-1)
        return logits[0].double().numpy()

    def _step(self, task: str) -> float:
        """The grid one task's part of the code is rounded to (0: not rounded)."""
        own = getattr(self.config, f"{task}_step")
        return self.config.step if own is None else own

    def _transform_kind(self, kind, items, ids):
        return [self._code(a, kind) if len(a) else np.zeros((0, self.output_dim), np.float32) for a in items]

    # ------------------------------------------------------------------ state

    def state(self):
        state = {"tasks": np.array([list(TASK_SETS).index(t) for t in self.tasks], dtype=np.int64)}
        for task in self.tasks:
            for i, (head, reader) in enumerate(zip(self.heads[task], self.readers[task])):
                prefix = _head_prefix(task, i)
                state[f"{prefix}mean"], state[f"{prefix}projection"] = reader
                state.update({f"{prefix}head.{k}": v.detach().numpy() for k, v in head.state_dict().items()})
        return state

    def set_state(self, state) -> None:
        names = list(TASK_SETS)
        self.tasks = tuple(names[int(i)] for i in np.asarray(state["tasks"]))
        for task in self.tasks:
            self.heads[task], self.readers[task] = [], []
            i = 0
            while f"{_head_prefix(task, i)}mean" in state:
                prefix = _head_prefix(task, i)
                self.readers[task].append(
                    (
                        np.asarray(state[f"{prefix}mean"], np.float64),
                        np.asarray(state[f"{prefix}projection"], np.float64),
                    )
                )
                self.heads[task].append(_head_from_state(task, state, f"{prefix}head."))
                i += 1
