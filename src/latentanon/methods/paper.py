"""The paper's Anonymizing Adapter Module as methods.

- ``paper``: residual self-attention kept inside one video (batch invariant), trained on
  w_LC * L_LC + w_T * L_T - w_B * L_B (``latentanon.methods.training``); knobs: ``train.adapter``,
  ``train.weights``, ``train.tasks``, ``train.privacy``, ``train.lr`` / ``epochs`` / ...
- ``paper_batch``: the released form, attention across the clips of a mini-batch in training and
  when applied (``train.batch_size`` clips per sequence). For comparison only: a clip's output
  depends on the clips it is batched with.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from latentanon._configtools import from_dict
from latentanon.methods.aam import AAM, aam_from_state, aam_state, load_adapter
from latentanon.methods.base import Method
from latentanon.methods.config import AdapterConfig, TrainConfig
from latentanon.tasks.specs import TRAINING_SETS


class PaperMethod(Method):
    across_batch = False

    def __init__(self, name: str, train: TrainConfig = TrainConfig()):
        super().__init__(name, train)
        self.model: AAM | None = None
        self.heads: torch.nn.ModuleDict | None = None  # co-trained task heads (not part of the method)
        self.history: dict = {}

    def _fit(self, sets, seed, checkpoint_dir) -> None:
        from latentanon.methods.training import fit_adapter_with_heads

        task_sets = {name: fs for name, fs in sets.items() if name in TRAINING_SETS}
        self.model, self.heads, self.history = fit_adapter_with_heads(
            task_sets,
            self.train,
            self.train.weights,
            self.train.epochs,
            seed,
            checkpoint_dir,
            across_batch=self.across_batch,
        )
        self.info.update(
            {
                "best_epoch": self.history.get("best_epoch"),
                "selection": self.history.get("selection"),
                "seen_tasks": sorted(self.heads.keys()),
            }
        )

    def _transform_kind(self, kind, items, ids):
        from latentanon.methods.apply import apply_aam

        return apply_aam(self.model, kind, items)

    @classmethod
    def suggest(cls, trial, name, train, tune):
        """The loss weights (log-uniform in tune.w_*_range), and temperature / lr when ranges are set."""
        from dataclasses import replace

        from latentanon.methods.base import search_range
        from latentanon.methods.config import LossWeights

        ranges = {key: search_range(tune, key) for key in ("w_lc_range", "w_b_range", "w_t_range")}
        temperature = search_range(tune, "temperature_range", optional=True)
        lr = search_range(tune, "lr_range", optional=True)
        weights = LossWeights(
            latent_consistency=trial.suggest_float("w_lc", *ranges["w_lc_range"], log=True),
            utility=trial.suggest_float("w_t", *ranges["w_t_range"], log=True),
            privacy=trial.suggest_float("w_b", *ranges["w_b_range"], log=True),
            temperature=(
                trial.suggest_float("temperature", *temperature, log=True) if temperature else train.weights.temperature
            ),
        )
        train = replace(train, weights=weights)
        if lr:
            train = replace(train, lr=trial.suggest_float("lr", *lr, log=True))
        return name, train

    def state(self):
        return aam_state(self.model)

    def set_state(self, state) -> None:
        assert self.dim is not None  # restore() sets it before set_state
        self.model = aam_from_state(self.dim, self.train.adapter, state)

    @classmethod
    def from_adapter_dir(cls, directory: Path) -> PaperMethod:
        """A legacy adapter directory (adapter.safetensors + config.json) as the paper method."""
        model = load_adapter(directory)
        config = json.loads((Path(directory) / "config.json").read_text())
        train = TrainConfig(adapter=from_dict(AdapterConfig, asdict(model.config)))
        if isinstance(config.get("weights"), dict):
            from latentanon.methods.config import LossWeights

            train = TrainConfig(adapter=train.adapter, weights=from_dict(LossWeights, config["weights"]))
        method = cls("paper", train)
        method.model, method.dim = model, model.dim
        return method


class PaperBatchMethod(PaperMethod):
    across_batch = True
    batch_invariant = False

    def _transform_kind(self, kind, items, ids):
        from latentanon.methods.apply import apply_aam_across_batch

        return apply_aam_across_batch(self.model, items, self.train.batch_size)
