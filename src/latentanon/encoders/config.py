"""Config of the encoder (``pretrain_encoder``) and ``extract`` stages."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainConfig:
    encoder: str = "builtin"            # "builtin" or "hf:<local directory>"
    seed: int = 0
    dim: int = 128
    depth: int = 4
    heads: int = 4
    tubelet: int = 2
    patch: int = 8
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    mask_ratio: float = 0.75
    supervised_weight: float = 1.0


@dataclass(frozen=True)
class ExtractConfig:
    batch_size: int = 64
    num_workers: int = 1
    clips_per_video: int = 5
    static_per_video: int = 4
    snippet_stride: int = 16
    videos_per_shard: int = 256
    dtype: str = "auto"                 # auto: bf16 autocast on GPU, float32 on CPU
    device: str = "auto"
