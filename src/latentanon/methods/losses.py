"""The adapter's losses (DESIGN.md section 1): privacy L_B, latent consistency L_LC, and the total.

total = w_LC * L_LC + w_T * L_T - w_B * L_B, minimised in one joint step; L_B is maximised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentanon.methods.config import LossWeights


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent between two views, (N, d) each; row i of both is the same video.

    Each of the 2N embeddings has its other view as the positive and the 2N - 2 embeddings of
    the other videos as negatives; cosine similarity over ``temperature``, mean over the 2N
    anchors. No projection head: the adapter's outputs are compared directly.
    """
    if first.shape != second.shape or first.dim() != 2:
        raise ValueError(
            f"nt_xent needs two (N, d) views of equal shape, got {tuple(first.shape)} and {tuple(second.shape)}"
        )
    n = first.shape[0]
    if n < 2:
        raise ValueError("nt_xent needs at least two videos (one positive and one negative per anchor)")
    if temperature <= 0:
        raise ValueError(f"nt_xent temperature must be positive, got {temperature}")
    z = F.normalize(torch.cat([first, second]), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)


def latent_consistency(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between AAM(h) and h over the real (unpadded) positions, mean over dims."""
    squared = (output - target).pow(2).mean(dim=-1)
    if mask is None:
        return squared.mean()
    mask = mask.to(squared.dtype)
    return (squared * mask).sum() / mask.sum().clamp_min(1.0)


def total_loss(
    weights: LossWeights,
    latent: torch.Tensor,
    utility: torch.Tensor,
    privacy: torch.Tensor,
) -> torch.Tensor:
    """w_LC * L_LC + w_T * L_T - w_B * L_B (the privacy term enters with a minus: it is maximised)."""
    return weights.latent_consistency * latent + weights.utility * utility - weights.privacy * privacy
