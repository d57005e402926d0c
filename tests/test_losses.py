"""Adapter losses: NT-Xent on hand-made cases, L_LC at identity, the direction of L_B's gradient."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from latentanon.methods.aam import AAM
from latentanon.methods.config import AdapterConfig, LossWeights
from latentanon.methods.losses import latent_consistency, nt_xent, total_loss


def _brute_force_nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = a.shape[0]
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        sims = {j: float(z[i] @ z[j]) / tau for j in range(2 * n) if j != i}
        losses.append(-sims[positive] + math.log(sum(math.exp(s) for s in sims.values())))
    return sum(losses) / len(losses)


def test_nt_xent_identical_positives_orthogonal_negatives():
    e = torch.eye(4)
    # every anchor: positive similarity 1, two negatives at 0 -> -log(e / (e + 2))
    value = nt_xent(e[:2], e[:2].clone(), temperature=1.0)
    assert value.item() == pytest.approx(math.log((math.e + 2) / math.e), abs=1e-6)


def test_nt_xent_all_orthogonal_is_log_of_candidates():
    e = torch.eye(4)
    assert nt_xent(e[:2], e[2:], temperature=0.1).item() == pytest.approx(math.log(3), abs=1e-6)


def test_nt_xent_opposite_positives_with_temperature():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = -a
    # anchor a0: positive -1/tau; negatives a1 (0), b1 (0) -> log(e^{-1/t} + 2) + 1/t
    tau = 0.5
    expected = math.log(math.exp(-1 / tau) + 2) + 1 / tau
    assert nt_xent(a, b, tau).item() == pytest.approx(expected, abs=1e-5)


def test_nt_xent_matches_brute_force_and_ignores_scale():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=gen), torch.randn(5, 8, generator=gen)
    assert nt_xent(a, b, 0.1).item() == pytest.approx(_brute_force_nt_xent(a, b, 0.1), rel=1e-5)
    assert nt_xent(3 * a, 0.5 * b, 0.1).item() == pytest.approx(nt_xent(a, b, 0.1).item(), rel=1e-5)


def test_nt_xent_rejects_bad_input():
    with pytest.raises(ValueError, match="equal shape"):
        nt_xent(torch.randn(3, 4), torch.randn(2, 4), 0.1)
    with pytest.raises(ValueError, match="at least two"):
        nt_xent(torch.randn(1, 4), torch.randn(1, 4), 0.1)
    with pytest.raises(ValueError, match="positive"):
        nt_xent(torch.randn(2, 4), torch.randn(2, 4), 0.0)


def test_latent_consistency_is_zero_at_identity_and_ignores_padding():
    model = AAM(16, AdapterConfig(blocks=2, heads=4))
    x = torch.randn(3, 5, 16)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 3:] = False
    x[0, 3:] = 0.0
    assert latent_consistency(model(x, mask), x, mask).item() == 0.0
    # a real difference counts, one at a padded position does not
    target = x.clone()
    target[1, 0, 0] += 2.0
    target[0, 4, 0] += 100.0
    assert latent_consistency(x, target, mask).item() == pytest.approx(4.0 / 16 / 13, rel=1e-6)


def test_total_loss_signs():
    weights = LossWeights(latent_consistency=100.0, utility=2.0, privacy=3.0)
    value = total_loss(weights, torch.tensor(0.5), torch.tensor(1.5), torch.tensor(4.0))
    assert value.item() == pytest.approx(100 * 0.5 + 2 * 1.5 - 3 * 4.0)


def _pair_and_negative_similarity(first: torch.Tensor, second: torch.Tensor) -> tuple[float, float]:
    z = F.normalize(torch.cat([first, second]), dim=1)
    sims = z @ z.T
    n = first.shape[0]
    positive = F.cosine_similarity(first, second).mean()
    negative = (sims.sum() - sims.diagonal().sum() - 2 * n * positive) / (2 * n * (2 * n - 2))
    return positive.item(), negative.item()


def test_privacy_gradient_pushes_static_pairs_apart_at_the_embeddings():
    """A descent step on -w_B * L_B, taken on the static-clip embeddings themselves, lowers the
    cosine similarity of the two clips of each video and raises that to the other videos."""
    gen = torch.Generator().manual_seed(0)
    videos = torch.randn(10, 16, generator=gen)
    first = (videos + 0.3 * torch.randn(10, 16, generator=gen)).requires_grad_()
    second = (videos + 0.3 * torch.randn(10, 16, generator=gen)).requires_grad_()
    before = _pair_and_negative_similarity(first.detach(), second.detach())
    weights = LossWeights(privacy=1.0)
    loss = total_loss(weights, torch.zeros(()), torch.zeros(()), nt_xent(first, second, weights.temperature))
    loss.backward()
    with torch.no_grad():
        first -= 2.0 * first.grad
        second -= 2.0 * second.grad
    after = _pair_and_negative_similarity(first.detach(), second.detach())
    assert after[0] < before[0] - 1e-3
    assert after[1] > before[1]


def test_privacy_steps_through_the_adapter_separate_static_pairs():
    """Descent steps on -w_B * L_B through the AAM raise L_B and shrink the margin by which two
    static clips of a video resemble each other more than clips of other videos."""
    torch.manual_seed(0)
    model = AAM(16, AdapterConfig(blocks=1, heads=2, mlp=True))
    videos = torch.randn(12, 16)
    first = videos + 0.2 * torch.randn(12, 16)
    second = videos + 0.2 * torch.randn(12, 16)
    weights = LossWeights(privacy=1.0)

    def measure() -> tuple[float, float]:
        with torch.no_grad():
            out1, out2 = model(first[:, None])[:, 0], model(second[:, None])[:, 0]
            positive, negative = _pair_and_negative_similarity(out1, out2)
            return positive - negative, nt_xent(out1, out2, weights.temperature).item()

    margin_before, privacy_before = measure()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        privacy = nt_xent(model(first[:, None])[:, 0], model(second[:, None])[:, 0], weights.temperature)
        loss = total_loss(weights, torch.zeros(()), torch.zeros(()), privacy)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    margin_after, privacy_after = measure()
    assert privacy_after > privacy_before
    assert margin_after < margin_before - 1e-3
