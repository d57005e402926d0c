"""One batch of adapter training: each set's split as padded tensors, batches that mix the sets,
and the joint loss on a batch.

Each batch mixes videos of every training set (actions, untrimmed, anomaly):
- L_B: two different static clips of each video (length-1 sequences through the AAM), NT-Xent
  across the batch, maximised;
- L_LC: MSE between the AAM's output and its input on the moving clips / snippet sequences;
- L_T: the seen tasks' heads (AR on actions clips, TAD on untrimmed snippets, AD on anomaly
  snippets) on the AAM's outputs, each times its task weight (weight 0: unseen, no head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from latentanon.features.featureset import FeatureSet
from latentanon.methods.aam import AAM
from latentanon.methods.config import LossWeights, TrainConfig
from latentanon.methods.losses import latent_consistency, nt_xent, total_loss
from latentanon.tasks.annotations import tad_targets
from latentanon.tasks.heads import ADHead, ARHead, TADHead
from latentanon.tasks.specs import TRAINING_SETS


@dataclass
class SplitTensors:
    """One set's split as padded tensors: moving sequences, static clips, task targets."""

    moving: torch.Tensor  # (N, T, d)
    moving_mask: torch.Tensor  # (N, T) bool
    static: torch.Tensor  # (N, S, d)
    static_count: np.ndarray  # (N,) real static clips per video
    targets: torch.Tensor | None  # ar: (N,), tad: (N, T), ad: (N,)

    def __len__(self) -> int:
        return self.moving.shape[0]


def _padded(items: list[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    t_max = max((a.shape[0] for a in items), default=1) or 1
    x = np.zeros((len(items), t_max, dim), dtype=np.float32)
    mask = np.zeros((len(items), t_max), dtype=bool)
    for i, a in enumerate(items):
        x[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


def split_tensors(fs: FeatureSet, kind: str, task: str, vocabulary: list[str], dim: int, device) -> SplitTensors:
    moving, moving_mask = _padded(fs.kind(kind), dim)
    static_items = fs.arrays.get("static", [np.zeros((0, dim), np.float32)] * len(fs))
    static, static_mask = _padded(static_items, dim)
    targets = None
    if task == "ar":
        targets = torch.tensor(fs.records["label_id"].to_numpy(dtype=np.int64))
    elif task == "tad" and vocabulary:
        targets = torch.zeros(moving_mask.shape, dtype=torch.long)
        for i, t in enumerate(tad_targets(fs, vocabulary)):
            targets[i, : len(t)] = torch.from_numpy(t)
    elif task == "ad":
        targets = torch.tensor(fs.records["anomaly"].to_numpy(dtype=np.int64))
    return SplitTensors(
        moving.to(device),
        moving_mask.to(device),
        static.to(device),
        static_mask.sum(dim=1).numpy(),
        None if targets is None else targets.to(device),
    )


class _ReverseGradient(torch.autograd.Function):
    """Identity forward, negated gradient backward: the critic minimises what the adapter maximises."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def build_critic(dim: int, hidden: int) -> torch.nn.Module:
    """The L_B projection head; its LayerNorm makes the match blind to the outputs' scale."""
    return torch.nn.Sequential(
        torch.nn.LayerNorm(dim), torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden)
    )


def _two_positions(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two different random positions below each count (every count >= 2)."""
    first = np.floor(rng.random(len(counts)) * counts).astype(np.int64)
    offset = 1 + np.floor(rng.random(len(counts)) * (counts - 1)).astype(np.int64)
    return first, (first + offset) % counts


def _privacy_loss(pairs: list[tuple[torch.Tensor, torch.Tensor]], critic, temperature: float) -> torch.Tensor | None:
    """L_B averaged over the kinds of pairs; through the critic (gradient reversed) when there is one."""
    losses = []
    for a, b in pairs:
        if a.shape[0] < 2:
            continue
        if critic is not None:
            a, b = critic(_ReverseGradient.apply(a)), critic(_ReverseGradient.apply(b))
        losses.append(nt_xent(a, b, temperature))
    return torch.stack(losses).mean() if losses else None


def _run(model: AAM, x: torch.Tensor, mask: torch.Tensor, across_batch: bool) -> torch.Tensor:
    """The AAM on padded sequences: per video, or (the released paper form) with every real clip
    of the batch in one attention sequence."""
    if not across_batch:
        return model(x, mask)
    out = torch.zeros_like(x)
    out[mask] = model(x[mask][None])[0]
    return out


def _run_static(model: AAM, clips: torch.Tensor, across_batch: bool) -> torch.Tensor:
    """(N, d) static clips: each alone, or all in one sequence (released paper form)."""
    return model(clips[None])[0] if across_batch else model(clips[:, None])[:, 0]


def batch_losses(
    model: AAM,
    heads: torch.nn.ModuleDict,
    data: dict[str, SplitTensors],
    rows: dict[str, np.ndarray],
    train_cfg: TrainConfig,
    weights: LossWeights,
    rng: np.random.Generator,
    critic: torch.nn.Module | None = None,
    across_batch: bool = False,
) -> dict[str, torch.Tensor]:
    outputs, inputs = [], []
    utility = torch.zeros((), device=next(model.parameters()).device)
    parts: dict[str, torch.Tensor] = {}
    firsts, seconds = [], []
    moving_firsts, moving_seconds = [], []
    use_moving = train_cfg.privacy.views == "static+moving"
    for name, split in data.items():
        idx = rows[name]
        if not len(idx):
            continue
        index = torch.as_tensor(idx, device=split.moving.device)
        x, mask = split.moving[index], split.moving_mask[index]
        out = _run(model, x, mask, across_batch)
        outputs.append(out[mask])
        inputs.append(x[mask])
        task = TRAINING_SETS[name][1]
        if task in heads and split.targets is not None:
            head = heads[task]
            assert isinstance(head, (ARHead, TADHead, ADHead))  # what training._build_heads puts there
            loss = head.loss(out, mask, split.targets[index])
            parts[task] = loss.detach()
            utility = utility + getattr(train_cfg.tasks, task) * loss
        # two different static clips of each video that has at least two
        counts = split.static_count[idx]
        usable = np.flatnonzero(counts >= 2)
        if len(usable):
            first, second = _two_positions(counts[usable], rng)
            vids = torch.as_tensor(idx[usable], device=split.static.device)
            firsts.append(split.static[vids, torch.as_tensor(first, device=vids.device)])
            seconds.append(split.static[vids, torch.as_tensor(second, device=vids.device)])
        if use_moving:
            # two different moving clips / snippets of each video, as the adapter outputs them
            lengths = mask.sum(dim=1).cpu().numpy()
            usable = np.flatnonzero(lengths >= 2)
            if len(usable):
                first, second = _two_positions(lengths[usable], rng)
                rows_t = torch.as_tensor(usable, device=out.device)
                moving_firsts.append(out[rows_t, torch.as_tensor(first, device=out.device)])
                moving_seconds.append(out[rows_t, torch.as_tensor(second, device=out.device)])
    # pooled over every real clip / snippet of every set in the batch
    latent = latent_consistency(torch.cat(outputs), torch.cat(inputs)) if outputs else utility * 0.0
    pairs = []
    if firsts:
        a, b = torch.cat(firsts), torch.cat(seconds)
        pairs.append((_run_static(model, a, across_batch), _run_static(model, b, across_batch)))
    if moving_firsts:
        pairs.append((torch.cat(moving_firsts), torch.cat(moving_seconds)))
    privacy = _privacy_loss(pairs, critic, weights.temperature)
    if privacy is None:
        privacy = utility * 0.0
    total = total_loss(weights, latent, utility, privacy)
    # With a critic the gradient reversal already turns L_B's sign for the adapter, so the step
    # minimises + w_B * L_B (the critic matches, the adapter un-matches); "total" stays the
    # adapter's objective as reported everywhere else.
    step = total if critic is None else total + 2.0 * weights.privacy * privacy
    return {"total": total, "step": step, "latent": latent, "utility": utility, "privacy": privacy, **parts}


def batches(data: dict[str, SplitTensors], batch_size: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Shuffle each set and deal it into the same number of batches, so each batch mixes sets."""
    total = sum(len(s) for s in data.values())
    n_batches = max(1, math.ceil(total / batch_size))
    dealt = {name: np.array_split(rng.permutation(len(s)), n_batches) for name, s in data.items()}
    return [{name: dealt[name][k] for name in data} for k in range(n_batches)]
