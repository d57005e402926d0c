"""Latent-space baselines compared with AAM on the same features and protocol.

``fit_baseline(name, sets, cfg, seed)`` fits a baseline on the train splits of ``sets``
(set name -> FeatureSet) and returns a transform FeatureSet -> FeatureSet. Names: ``identity``,
``leace``, ``adversarial``, ``noise@<scale>`` (``method_names`` expands ``noise`` over
``cfg.noise_scales``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from latentanon.adapter.config import AdapterConfig
from latentanon.evaluation.config import EvaluateConfig
from latentanon.features.featureset import FeatureSet

Transform = Callable[[FeatureSet], FeatureSet]

BASELINES = ("identity", "leace", "adversarial", "noise")
# Baselines that must be trained with the private labels they hide (AAM and noise need none).
NEEDS_PRIVATE_LABELS = frozenset({"leace", "adversarial"})


def base_name(method: str) -> str:
    """``noise@0.5`` -> ``noise``."""
    return method.split("@", 1)[0]


def method_names(cfg: EvaluateConfig) -> list[str]:
    """Configured baselines with noise expanded per scale, e.g. [identity, leace, noise@0.5, ...]."""
    names = []
    for name in cfg.baselines:
        if name not in BASELINES:
            raise ValueError(f"evaluate.baselines: unknown baseline {name!r}; known: {', '.join(BASELINES)}")
        if name == "noise":
            names.extend(f"noise@{scale:g}" for scale in cfg.noise_scales)
        else:
            names.append(name)
    return names


def fit_baseline(
    name: str,
    sets: Mapping[str, FeatureSet],
    cfg: EvaluateConfig,
    seed: int,
    adapter: AdapterConfig | None = None,
) -> Transform:
    """Fit baseline ``name`` on the train splits of ``sets``; ``adapter`` shapes the adversarial AAM."""
    from latentanon.evaluation.privacy import ATTRIBUTES

    base = base_name(name)
    if base == "identity":
        from latentanon.baselines.identity import identity_transform

        return identity_transform
    if base == "leace":
        from latentanon.baselines.leace import fit_leace

        return fit_leace(sets, ATTRIBUTES)
    if base == "adversarial":
        from latentanon.baselines.adversarial import AdversarialSettings, adversarial_transform, fit_adversarial

        settings = AdversarialSettings(
            steps=cfg.adversarial_steps,
            lr=cfg.adversarial_lr,
            reversal=cfg.adversarial_reversal,
            consistency=cfg.adversarial_consistency,
        )
        model = fit_adversarial(sets, ATTRIBUTES, seed, adapter or AdapterConfig(), settings)
        return adversarial_transform(model)
    if base == "noise":
        from latentanon.baselines.noise import noise_transform, train_feature_std

        if "@" in name:
            scale = float(name.split("@", 1)[1])
        elif len(cfg.noise_scales) == 1:
            scale = cfg.noise_scales[0]
        else:
            raise ValueError(f"baseline 'noise' is ambiguous with scales {cfg.noise_scales}: use noise@<scale>")
        return noise_transform(train_feature_std(sets), scale, seed)
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)} (noise as noise@<scale>)")
