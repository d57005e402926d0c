"""``adversarial``: the AAM architecture trained through a gradient-reversal layer.

 the AAM architecture trained through a gradient-reversal layer.

An attribute discriminator learns to predict the private labels from the adapter's static-clip
outputs; the reversed gradient teaches the adapter to defeat it. An AR head on moving clips keeps
the action signal and a scale-free MSE keeps outputs close to inputs. Unlike AAM it needs private
labels for training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet
from latentanon.methods.aam import AAM, aam_from_state, aam_state
from latentanon.methods.base import Method
from latentanon.methods.config import AdapterConfig
from latentanon.methods.losses import latent_consistency
from latentanon.tasks.heads import ARHead
from latentanon.tasks.private import ATTRIBUTES, attack_data

PRIVACY_SETS = ("privacy_videos", "privacy_images")


@dataclass(frozen=True)
class AdversarialSettings:
    steps: int = 200
    lr: float = 3e-3
    batch_size: int = 256
    reversal: float = 1.0  # gradient-reversal strength (lambda)
    utility: float = 1.0  # AR cross-entropy weight
    consistency: float = 0.1  # weight of MSE(AAM(h), h) / Var(h)
    hidden: int = 128  # discriminator hidden width
    discriminator_lr_ratio: float = 1.0


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Identity forward; gradient multiplied by -strength backward."""
    return _ReverseGradient.apply(x, strength)


class _Discriminator(nn.Module):
    def __init__(self, dim: int, n_classes: Sequence[int], hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in n_classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.body(x)
        return [head(h) for head in self.heads]


def _moving_clips(sets: Mapping[str, FeatureSet]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if "actions" not in sets:
        raise DataError(f"adversarial baseline needs the actions set for its AR loss; got {sorted(sets)}")
    train = sets["actions"].split("train")
    if len(train) == 0:
        raise DataError("adversarial baseline: the actions set has no train videos")
    clips, mask = train.padded("clips")
    labels = train.records["label_id"].to_numpy(dtype=np.int64)
    return torch.from_numpy(clips.copy()), torch.from_numpy(mask.copy()), torch.from_numpy(labels.copy())


def fit_adversarial(
    sets: Mapping[str, FeatureSet],
    attributes: Sequence[str],
    seed: int,
    adapter_config: AdapterConfig = AdapterConfig(),
    settings: AdversarialSettings = AdversarialSettings(),
) -> AAM:
    """Train the adapter on train splits only (privacy static clips with labels, action clips)."""
    privacy_train = [sets[name].split("train") for name in PRIVACY_SETS if name in sets]
    if not privacy_train:
        raise DataError(f"adversarial baseline needs a privacy set ({', '.join(PRIVACY_SETS)}); got {sorted(sets)}")
    data = attack_data(privacy_train, attributes, "static")
    static = torch.from_numpy(data.x)
    targets = [torch.from_numpy(data.labels[a][data.video]) for a in attributes]
    n_classes = [max(int(t.max()) + 1, 2) for t in targets]
    clips, clip_mask, actions = _moving_clips(sets)
    scale = float(static.var(dim=0).mean().clamp_min(1e-8))

    generator = torch.Generator().manual_seed(seed)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        adapter = AAM(static.shape[1], adapter_config)
        discriminator = _Discriminator(static.shape[1], n_classes, settings.hidden)
        ar_head = ARHead(static.shape[1], int(actions.max()) + 1)
    finally:
        torch.random.set_rng_state(state)
    # The discriminator learns faster than the adapter so that the reversed gradient it sends
    # reflects what a freshly trained attacker could still read.
    optimizer = torch.optim.AdamW(
        [
            {"params": [*adapter.parameters(), *ar_head.parameters()], "lr": settings.lr},
            {"params": discriminator.parameters(), "lr": settings.lr * settings.discriminator_lr_ratio},
        ]
    )
    adapter.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread avoids contention on shared cores
    try:
        for _ in tqdm(range(settings.steps), desc="adversarial baseline", leave=False, disable=None):
            s = torch.randint(0, static.shape[0], (min(settings.batch_size, static.shape[0]),), generator=generator)
            v = torch.randint(0, clips.shape[0], (min(settings.batch_size, clips.shape[0]),), generator=generator)
            anon_static = adapter(static[s][:, None, :])[:, 0]
            anon_clips = adapter(clips[v], clip_mask[v])
            adversary = sum(
                F.cross_entropy(logits, t[s], ignore_index=-1)
                for logits, t in zip(discriminator(reverse_gradient(anon_static, settings.reversal)), targets)
                if (t[s] >= 0).any()
            )
            utility = ar_head.loss(anon_clips, clip_mask[v], actions[v])
            consistency = (
                latent_consistency(anon_clips, clips[v], clip_mask[v]) + latent_consistency(anon_static, static[s])
            ) / scale
            loss = adversary + settings.utility * utility + settings.consistency * consistency
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return adapter.eval()


class AdversarialMethod(Method):
    """Needs private labels; applied like the paper AAM (one sequence per video, static clips alone)."""

    needs_private_labels = True

    def _fit(self, sets, seed, checkpoint_dir) -> None:
        cfg = self.train.adversarial
        settings = AdversarialSettings(steps=cfg.steps, lr=cfg.lr, reversal=cfg.reversal, consistency=cfg.consistency)
        self.model = fit_adversarial(sets, ATTRIBUTES, seed, self.train.adapter, settings)

    def _transform_kind(self, kind, items, ids):
        from latentanon.methods.apply import apply_aam

        return apply_aam(self.model, kind, items)

    def state(self):
        return aam_state(self.model)

    def set_state(self, state) -> None:
        assert self.dim is not None  # restore() sets it before set_state
        self.model = aam_from_state(self.dim, self.train.adapter, state)
