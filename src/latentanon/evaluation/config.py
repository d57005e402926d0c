"""Config of the ``evaluate`` and ``audit_bias`` stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from latentanon._configtools import ConfigError


@dataclass(frozen=True)
class EvaluateConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    confidence: float = 0.95
    # small scales included: on the built-in features a little noise already hides much of the
    # static-clip signal (measured), so the baseline must be compared where it costs no utility
    noise_scales: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0)
    # Methods fitted here per seed and compared with the train stage's method ("trained") and raw;
    # registry names (latentanon.methods.registry), "noise" expands over noise_scales. Their knobs
    # come from the train section (e.g. train.adversarial).
    # rotation: the control (information-preserving; reads leakage 1 and no utility change when
    # the measurement is sound, so its spread is the noise floor)
    methods: tuple[str, ...] = ("identity", "rotation", "leace", "adversarial", "noise")
    workers: int = 2  # processes measuring (method, seed) pairs; 1 = in-process
    # false: each fitted baseline is fitted once (on the first seed) and its features measured on
    # every seed (attackers and heads retrained per seed; noise drawn per seed). true: refitted per
    # seed, so its intervals also cover its own training variance (the paper AAMs take minutes).
    refit_baselines: bool = False
    bootstrap: int = 500  # resamples of the test items for the paired intervals
    head_restarts: int = 1  # utility heads averaged per (task, seed): steadier figures
    # What the utility heads read (tasks.head_inputs.HEAD_INPUTS); given both, val picks per method,
    # task and seed, so raw and every method are read by their stronger head (standardised alone
    # read raw 3 points of AR and AD lower, flattering every method; principal axes alone read
    # noisy features lower, and cannot be moved by a rotation)
    head_inputs: tuple[Literal["standardised", "principal_axes"], ...] = ("standardised", "principal_axes")
    # Unseen tasks (the paper's Table 4): the trained method refitted with each task held out in
    # turn and that task scored as unseen, on these seeds (empty: skipped).
    unseen_seeds: tuple[int, ...] = (0,)
    # Re-release scopes: the privacy videos published this many times through the method's real
    # publish path (fresh noise each time), averaged per clip and attacked (empty: not measured)
    releases: tuple[int, ...] = (16, 64)

    def __post_init__(self):
        if not self.head_inputs or len(set(self.head_inputs)) != len(self.head_inputs):
            raise ConfigError(
                f"evaluate.head_inputs: give each input form once, at least one; got {list(self.head_inputs)}"
            )
        if any(int(r) < 2 for r in self.releases):
            raise ConfigError(
                f"evaluate.releases: each count of releases must be at least 2; got {list(self.releases)}"
            )


@dataclass(frozen=True)
class BiasConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    skew: float = 0.95
    confidence: float = 0.95
    shortcut_action: str = ""  # the action whose gender skew is flipped; "" = lowest label id
