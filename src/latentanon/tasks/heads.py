"""Task heads over (B, T, d) feature sequences, shared by method co-training (L_T) and evaluation.

- AR: a linear classifier per clip; a video's prediction is the softmax averaged over its clips.
- TAD: a small temporal convolution over a snippet sequence giving per-snippet scores for every
  action class plus background (index 0).
- AD: a multiple-instance ranking head: per-snippet anomaly scores from a small temporal
  convolution (``kernel`` 1 is Sultani et al.'s per-snippet MLP; later weakly supervised
  detectors, RTFM and its successors, read temporal context), trained only with video-level
  labels (hinge between the top snippet of anomalous and of normal videos, plus smoothness and
  sparsity on anomalous videos, as in Sultani et al. 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BACKGROUND = 0


class ARHead(nn.Module):
    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> per-clip logits (B, T, C)."""
        return self.linear(clips)

    def loss(self, clips: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every real clip against its video's label."""
        logits = self(clips)
        per_clip = labels[:, None].expand(mask.shape)
        return F.cross_entropy(logits[mask], per_clip[mask])

    def video_probabilities(self, clips: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Softmax averaged over each video's real clips: (B, C)."""
        probs = self(clips).softmax(dim=-1) * mask[..., None]
        return probs.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1)


class TADHead(nn.Module):
    def __init__(self, dim: int, n_classes: int, hidden: int = 64, kernel: int = 3):
        super().__init__()
        self.n_classes = n_classes
        self.conv_in = nn.Conv1d(dim, hidden, kernel, padding=kernel // 2)
        self.conv_out = nn.Conv1d(hidden, n_classes + 1, kernel, padding=kernel // 2)

    def forward(self, snippets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> per-snippet logits (B, T, C + 1); padding is zeroed so it adds nothing."""
        x = (snippets * mask[..., None]).transpose(1, 2)
        x = F.gelu(self.conv_in(x)) * mask[:, None, :]
        return self.conv_out(x).transpose(1, 2)

    def loss(self, snippets: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-snippet cross-entropy; ``targets`` (B, T) holds 0 for background, 1 + class id else."""
        logits = self(snippets, mask)
        return F.cross_entropy(logits[mask], targets[mask])

    def probabilities(self, snippets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self(snippets, mask).softmax(dim=-1)


class ADHead(nn.Module):
    def __init__(self, dim: int, hidden: int = 64, kernel: int = 3, smoothness: float = 0.1, sparsity: float = 0.01):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"ADHead: kernel must be odd and positive, got {kernel}")
        self.smoothness = smoothness
        self.sparsity = sparsity
        self.conv_in = nn.Conv1d(dim, hidden, kernel, padding=kernel // 2)
        self.conv_out = nn.Conv1d(hidden, 1, kernel, padding=kernel // 2)

    def forward(self, snippets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> per-snippet anomaly scores in [0, 1], (B, T); padding is zeroed and scores 0."""
        x = (snippets * mask[..., None]).transpose(1, 2)
        x = F.gelu(self.conv_in(x)) * mask[:, None, :]
        return torch.sigmoid(self.conv_out(x).squeeze(1)) * mask

    def loss(self, snippets: torch.Tensor, mask: torch.Tensor, anomalous: torch.Tensor) -> torch.Tensor:
        return mil_ranking_loss(self(snippets, mask), mask, anomalous, self.smoothness, self.sparsity)


def mil_ranking_loss(
    scores: torch.Tensor,
    mask: torch.Tensor,
    anomalous: torch.Tensor,
    smoothness: float = 0.1,
    sparsity: float = 0.01,
) -> torch.Tensor:
    """Hinge ranking between bags: every anomalous video's top snippet should outscore every normal
    video's top snippet by a margin of 1. A batch without both kinds gives zero (still in the graph)."""
    anomalous = anomalous.bool()
    top = scores.masked_fill(~mask, float("-inf")).amax(dim=1)
    if not anomalous.any() or anomalous.all():
        return scores.sum() * 0.0
    ranking = F.relu(1.0 - top[anomalous][:, None] + top[~anomalous][None, :]).mean()
    positive, positive_mask = scores[anomalous], mask[anomalous].to(scores.dtype)
    pair_mask = positive_mask[:, 1:] * positive_mask[:, :-1]
    smooth = ((positive[:, 1:] - positive[:, :-1]).pow(2) * pair_mask).sum() / pair_mask.sum().clamp_min(1.0)
    sparse = (positive * positive_mask).sum() / positive_mask.sum().clamp_min(1.0)
    return ranking + smoothness * smooth + sparsity * sparse
