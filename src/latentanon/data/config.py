"""Config of the synthetic benchmark (``data``) and of the ``validate`` stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataConfig:
    root: str = "data/benchmark"  # where the benchmark is written and read
    seed: int = 0
    # 48x48: a face (about 8 px across), skin and clothing stay readable to a probe, at 2.25x the
    # pixels of 32x32 (the encoder's 12-px patches keep its token count)
    height: int = 48
    width: int = 48
    fps: int = 16
    clip_frames: int = 16  # frames per clip fed to the encoder
    trimmed_frames: int = 32  # length of a trimmed action video
    untrimmed_frames: int = 192  # length of an untrimmed (THUMOS / UCF-Crime style) video
    codec: str = "libx264"
    workers: int = 2  # processes rendering the benchmark (1 = in this process)
    # re-identification and gait are scored among the test identities: 48 of them for tight intervals
    n_identities_train: int = 32
    n_identities_val: int = 16
    n_identities_test: int = 48
    n_identities_pretrain: int = 32  # the pretraining corpus's own people (ids from 1001)
    pretrain_videos_per_class: int = 24
    actions_videos_per_identity_class: int = 1
    privacy_images_per_identity: int = 16  # single frames: cheap, and they tighten the leakage intervals
    privacy_videos_per_identity: int = 6
    untrimmed_videos_per_identity: int = 1
    anomaly_videos_per_identity: int = 2
    bias_videos_per_identity_class: int = 1
    # The test split of a utility set may hold several times its per-identity videos: narrower paired
    # utility intervals without more training data or identities (at most 99, UCF101's two-digit group
    # ids). 1 in the main job, for its 15-minute budget; benchmarks/bench_power.py raises them.
    test_actions_multiplier: int = 1
    test_untrimmed_multiplier: int = 1
    test_anomaly_multiplier: int = 1
    # Background scenes: 0 draws a new one for every video; n > 0 draws each video's scene from a
    # fixed pool of n, as real datasets film many videos in the same rooms and camera views. With a
    # pool, the person rather than the background is what tells two videos apart.
    scenes: int = 12


# the DataConfig fields that multiply the test split of a utility set (1: the main job)
TEST_MULTIPLIERS = ("test_actions_multiplier", "test_untrimmed_multiplier", "test_anomaly_multiplier")


@dataclass(frozen=True)
class ValidateConfig:
    max_quarantined_fraction: float = 0.02  # the stage fails above this share of unreadable videos
    check_decode: bool = True
    # every video needs a known identity; false for real datasets without identity sidecars
    # (split disjointness is then checked over the known identities only)
    require_identity: bool = True
