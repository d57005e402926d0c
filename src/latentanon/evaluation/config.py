"""Config of the ``evaluate`` and ``audit_bias`` stages."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluateConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    confidence: float = 0.95
    # small scales included: on the built-in features a little noise already hides much of the
    # static-clip signal (measured), so the baseline must be compared where it costs no utility
    noise_scales: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0)
    baselines: tuple[str, ...] = ("identity", "leace", "adversarial", "noise")
    workers: int = 2                     # processes measuring (method, seed) pairs; 1 = in-process
    adversarial_steps: int = 200         # gradient-reversal baseline: optimisation steps
    adversarial_lr: float = 3e-3
    adversarial_reversal: float = 1.0    # gradient-reversal strength
    adversarial_consistency: float = 0.1   # weight of the variance-normalised MSE to the input


@dataclass(frozen=True)
class BiasConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    skew: float = 0.95
    confidence: float = 0.95
    shortcut_action: str = ""            # the action whose gender skew is flipped; "" = lowest label id
