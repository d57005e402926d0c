"""Privacy scopes (per-video mean, re-release, the floor) on constructed sets whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from latentanon.evaluation import metrics, privacy, scopes
from latentanon.features.featureset import FeatureSet
from latentanon.methods.registry import create_method

ATTRIBUTE_CLASSES = {"skin_tone": 3, "gender": 2}
DIM = 12
# the linear attackers of the evaluation's grid (standardised and whitened): fast, and enough here
GRID = tuple(spec for spec in privacy.ATTACKER_GRID if spec.name == "linear")


def shared_videos(
    n_identities: int = 24,
    videos_per_identity: int = 2,
    clips: int = 3,
    signal: float = 1.2,
    seed: int = 0,
    name: str = "privacy_videos",
    kind: str = "clips",
) -> FeatureSet:
    """Each clip = its person's appearance (attribute directions on the first dimensions) + a
    little clip noise; identities split train / val / test (half, quarter, quarter)."""
    rng = np.random.default_rng(seed)
    directions = {a: np.zeros((k, DIM)) for a, k in ATTRIBUTE_CLASSES.items()}
    for i, (a, k) in enumerate(ATTRIBUTE_CLASSES.items()):
        directions[a][:, 4 * i : 4 * i + 4] = rng.standard_normal((k, 4)) * 2
    rows, arrays = [], []
    for person in range(n_identities):
        split = "train" if person < n_identities // 2 else "val" if person < 3 * n_identities // 4 else "test"
        attributes = {a: int(rng.integers(0, k)) for a, k in ATTRIBUTE_CLASSES.items()}
        appearance = signal * sum(directions[a][c] for a, c in attributes.items())
        for v in range(videos_per_identity):
            rows.append({"video_id": f"{name}-{person}-{v}", "split": split, "identity": person, **attributes})
            arrays.append((appearance + 0.5 * rng.standard_normal((clips, DIM))).astype(np.float32))
    return FeatureSet(name, pd.DataFrame(rows), {kind: arrays})


def leakage(result: dict, raw: dict) -> float:
    return metrics.normalized_leakage(result["cmap"], result["chance"], raw["cmap"])


def one_release(raw: FeatureSet, method, seed: int = 0, releases: tuple[int, ...] = (16,)) -> tuple[dict, dict]:
    """(method's scopes, raw's scopes), per clip included; every draw keyed, so the test reproduces."""
    published = method.with_reproducible_noise(seed).transform(raw)
    measured = scopes.measure_scopes(
        {"privacy_videos": published}, seed, method, {"privacy_videos": raw}, releases=releases, grid=GRID, entropy=seed
    )
    measured["moving"] = scopes.attack_scope(published, "clips", seed, False, grid=GRID)
    reference = scopes.measure_scopes({"privacy_videos": raw}, seed, releases=(), grid=GRID)
    reference["moving"] = scopes.attack_scope(raw, "clips", seed, False, grid=GRID)
    return measured, reference


@pytest.fixture(scope="module")
def raw_videos() -> FeatureSet:
    return shared_videos()


@pytest.mark.parametrize("seed", [0, 1])
def test_per_clip_noise_averages_away_over_the_video_and_over_releases(seed):
    raw_videos = shared_videos(n_identities=32, seed=seed)
    noise = create_method("noise@8").fit({"privacy_videos": raw_videos}, seed=0)
    measured, reference = one_release(raw_videos, noise, seed, releases=(64,))
    per_clip = leakage(measured["moving"], reference["moving"])
    video_mean = leakage(measured["moving_video_mean"], reference["moving_video_mean"])
    released = leakage(measured["rerelease64"], reference[scopes.raw_reference("rerelease64")])
    released_mean = leakage(measured["rerelease64_video_mean"], reference["moving_video_mean"])
    print(seed, round(per_clip, 3), round(video_mean, 3), round(released, 3), round(released_mean, 3))
    # a per-clip attacker averages its clips' softmax, close to what a linear attacker on the
    # video's mean reads: both stay low while 3 clips cannot average the noise away; 64 releases do
    assert per_clip < 0.45 and video_mean < 0.55
    assert released > max(per_clip, video_mean) + 0.3
    assert released_mean > max(per_clip, video_mean) + 0.3
    assert "deterministic" not in measured["rerelease64"]
    assert measured["rerelease64"]["releases"] == 64


def test_a_deterministic_transform_reads_the_same_in_every_release_and_a_rotation_reads_one(raw_videos):
    rotation = create_method("rotation").fit({"privacy_videos": raw_videos}, seed=0)
    assert scopes.releases_identical(rotation, raw_videos)
    measured, reference = one_release(raw_videos, rotation)
    assert "identical features" in measured["rerelease16"]["deterministic"]
    assert measured["rerelease16"]["cmap"] == measured["moving"]["cmap"]
    assert measured["rerelease16_video_mean"]["cmap"] == measured["moving_video_mean"]["cmap"]
    for scope in ("moving", "moving_video_mean", "rerelease16", "rerelease16_video_mean"):
        assert abs(leakage(measured[scope], reference[scopes.raw_reference(scope)]) - 1.0) < 0.25, scope


def test_stochastic_methods_publish_fresh_noise_even_after_evaluation_keyed_theirs(raw_videos):
    noise = create_method("noise@1").fit({"privacy_videos": raw_videos}, seed=0).with_reproducible_noise(3)
    keyed_a, keyed_b = noise.transform(raw_videos), noise.transform(raw_videos)
    assert np.array_equal(keyed_a.arrays["clips"][0], keyed_b.arrays["clips"][0])  # evaluation's keyed draw
    published = scopes.publisher(noise)
    assert not scopes.releases_identical(published, raw_videos)
    assert noise.reproducible_noise  # the original is untouched
    averaged = scopes.averaged_releases(published, raw_videos, (64,))[64]
    gap = np.mean([np.abs(a - r).mean() for a, r in zip(averaged.arrays["clips"], raw_videos.arrays["clips"])])
    single = np.mean([np.abs(a - r).mean() for a, r in zip(keyed_a.arrays["clips"], raw_videos.arrays["clips"])])
    assert gap < single / 5  # 64 fresh draws: the noise's std falls eightfold
    series = scopes.averaged_releases(scopes.publisher(noise, entropy=1), raw_videos, (4, 64))
    again = scopes.averaged_releases(scopes.publisher(noise, entropy=1), raw_videos, (4,))[4]
    assert set(series) == {4, 64} and series[64].meta["releases"] == 64
    assert np.array_equal(series[4].arrays["clips"][3], again.arrays["clips"][3])  # the first 4 of the series


def test_a_set_without_private_labels_is_skipped_with_its_reason(raw_videos):
    unlabelled = FeatureSet(
        "untrimmed", raw_videos.records.drop(columns=list(ATTRIBUTE_CLASSES)), {"snippets": raw_videos.arrays["clips"]}
    )
    unknown = raw_videos.records.copy()
    for a in ATTRIBUTE_CLASSES:
        unknown[a] = -1
    out = scopes.measure_scopes(
        {
            "privacy_videos": raw_videos,
            "untrimmed": unlabelled,
            "anomaly": FeatureSet("anomaly", unknown, {"snippets": raw_videos.arrays["clips"]}),
        },
        0,
        releases=(),
        grid=GRID,
    )
    assert "no private label column" in out["untrimmed_video_mean"]["skipped"]
    assert "known private label" in out["anomaly_video_mean"]["skipped"]
    assert "cmap" in out["moving_video_mean"]


def _ar_head(reads: slice, n_classes: int = 3):
    """An AR head whose logits read only the feature dimensions ``reads`` (identity inputs)."""
    from latentanon.tasks.fitting import FittedHead
    from latentanon.tasks.heads import ARHead

    class Identity:
        def padded(self, items):
            from latentanon.tasks.head_inputs import _padded

            return _padded(items, DIM, lambda a: a)

    head = ARHead(DIM, n_classes)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
        width = reads.stop - reads.start
        head.linear.weight[:, reads] = torch.randn(n_classes, width, generator=torch.Generator().manual_seed(0))
    return [FittedHead("ar", head.eval(), Identity(), [])]


def test_the_floor_reads_what_the_task_posteriors_carry():
    raw_videos = shared_videos(n_identities=64, seed=1)  # more test videos: chance reads steadily
    raw = {"privacy_videos": raw_videos}
    reference = scopes.attack_scope(raw_videos, "clips", 0, True, grid=GRID)
    blind = scopes.posterior_sets(raw, {"ar": _ar_head(slice(8, 12))})  # dims no attribute lives on
    seeing = scopes.posterior_sets(raw, {"ar": _ar_head(slice(0, 8), n_classes=6)})  # the attribute dims
    assert blind["privacy_videos"].arrays["clips"][0].shape == (3, 3)
    low = leakage(scopes.attack_scope(blind["privacy_videos"], "clips", 0, True, grid=GRID), reference)
    high = leakage(scopes.attack_scope(seeing["privacy_videos"], "clips", 0, True, grid=GRID), reference)
    assert low < 0.3
    assert high > low + 0.4


def test_evaluation_publish_noise_is_fresh_per_release_yet_reproducible(raw_videos):
    noise = create_method("noise@1").fit({"privacy_videos": raw_videos}, seed=0)
    first, again = scopes.publisher(noise, entropy=5), scopes.publisher(noise, entropy=5)
    release_a, release_b = first.transform(raw_videos), first.transform(raw_videos)
    assert not np.array_equal(release_a.arrays["clips"][0], release_b.arrays["clips"][0])  # fresh each release
    assert np.array_equal(release_a.arrays["clips"][0], again.transform(raw_videos).arrays["clips"][0])
    other = scopes.publisher(noise, entropy=6).transform(raw_videos)
    assert not np.array_equal(release_a.arrays["clips"][0], other.arrays["clips"][0])
    assert not scopes.releases_identical(first, raw_videos)
