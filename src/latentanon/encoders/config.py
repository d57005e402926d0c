"""Config of the encoder (``pretrain_encoder``) and ``extract`` stages."""

from __future__ import annotations

from dataclasses import dataclass

from latentanon.data.layouts import ATTRIBUTE_COLUMNS


@dataclass(frozen=True)
class PretrainConfig:
    encoder: str = "builtin"  # "builtin" or "hf:<local directory>"
    seed: int = 0
    # defaults sized for the main job on two CPU cores (see the ENC report: pretraining ~3 minutes)
    dim: int = 64
    depth: int = 2
    heads: int = 4
    tubelet: int = 2
    patch: int = 12  # 48x48 frames -> a 4x4 token grid per time slot
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    mask_ratio: float = 0.75  # tube masking of the reconstruction pass (the action head reads all tokens)
    supervised_weight: float = 1.0
    weight_decay: float = 0.05
    augment: bool = True  # random flip + small shift of training clips
    positions: str = "learned"  # "learned" or "sinusoidal" position embeddings
    decoder_dim: int = 64  # masked-reconstruction decoder (dropped after pretraining)
    decoder_depth: int = 1
    stem: str = "conv"  # "conv" (3-layer 3D conv stem) or "linear" (one tubelet projection)
    stem_width: int = 8
    inputs: str = "rgb+diff"  # "rgb", "diff" or "rgb+diff" (frames and their temporal differences)
    # "joint" (one transformer) or "two_stream" (appearance and motion pathways; see BuiltinConfig)
    pathways: str = "joint"
    # share of clips whose frames (not their differences) are hidden from the action head; 0 keeps
    # appearance in the features, as in a foundation model (the benchmark needs features that leak)
    rgb_dropout: float = 0.0
    # reconstruction target: "pixels" (colour kept) or "patch_norm" (VideoMAE's norm_pix_loss)
    target: str = "pixels"
    # Appearance heads on the pooled feature, trained on the pretraining people's own labels (never
    # a benchmark person's): a foundation model trained on human-centric data encodes who is seen,
    # and a 100k-parameter model trained on 600 clips learns it only when asked to.
    appearance_attributes: tuple[str, ...] = ATTRIBUTE_COLUMNS
    appearance_weight: float = 1.0  # 0: no appearance heads
    # share of training clips made static (one frame tiled): the appearance heads learn them too,
    # as static clips are what attackers read; the action loss skips them (a still has no action)
    static_share: float = 0.25
    # train splits of these manifest sets are added to the labelled pretraining clips (classes
    # matched by name); their val/test splits are never read here
    extra_train_sets: tuple[str, ...] = ("actions",)
    device: str = "auto"  # for the probe after training (training runs on the CPU)
    probe: bool = True  # action probe + attribute attackers -> reports/.../probe.json
    probe_clips_per_video: int = 5
    probe_static_per_video: int = 2
    # save the full training state every this many optimiser steps (0: never); a killed run
    # resumes from the last one, bitwise equal to an uninterrupted run
    checkpoint_every_steps: int = 20


@dataclass(frozen=True)
class ExtractConfig:
    batch_size: int = 64
    num_workers: int = 1
    clips_per_video: int = 5
    static_per_video: int = 4
    snippet_stride: int = 16
    videos_per_shard: int = 256
    dtype: str = "auto"  # auto: bf16 autocast on GPU, float32 on CPU
    device: str = "auto"
    sets: tuple[str, ...] = (  # manifest sets to extract (each must have a manifest)
        "actions",
        "privacy_videos",
        "privacy_images",
        "untrimmed",
        "anomaly",
        "bias",
    )
    # sets that also get static (one frame tiled) clips: attackers read them on the privacy sets,
    # and adapters train on the actions set's; elsewhere they cost extract time and nothing reads them
    static_sets: tuple[str, ...] = (
        "actions",
        "privacy_videos",
        "privacy_images",
        "untrimmed",
        "anomaly",
        "bias",
    )
