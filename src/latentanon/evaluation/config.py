"""Config of the ``evaluate`` and ``audit_bias`` stages."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluateConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    confidence: float = 0.95
    noise_scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    baselines: tuple[str, ...] = ("identity", "leace", "adversarial", "noise")


@dataclass(frozen=True)
class BiasConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    skew: float = 0.95
    confidence: float = 0.95
