"""The built-in video encoder: a small VideoMAE-style transformer (its pretraining heads are in
``masked_pretrainer``, its files in ``builtin_files``).

Input clips are (B, 3, T, H, W) floats in [0, 1]; the model normalises them itself (and, with
``inputs: rgb+diff``, adds their temporal differences as channels). Tokens come from a tubelet
embedding (``tubelet`` frames x ``patch`` x ``patch`` pixels; linear or a small conv stem with the
same grid); the pooled output is the mean of the final (layer-normed) tokens, of width ``dim``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentanon.errors import ModelError

# ImageNet statistics, as VideoMAE uses; the synthetic data has no better prior.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BuiltinConfig:
    """Architecture of the built-in encoder (saved as config.json next to the weights)."""

    dim: int = 128
    depth: int = 4
    heads: int = 4
    tubelet: int = 2
    patch: int = 8
    frames: int = 16
    height: int = 32
    width: int = 32
    mlp_ratio: float = 4.0
    positions: str = "learned"  # "learned" or "sinusoidal"
    num_classes: int = 0  # action classes of the pretraining head (0: no head)
    # classes of each appearance head of the pretrainer (skin tone, gender, ...; empty: none)
    attribute_classes: tuple[int, ...] = ()
    decoder_dim: int = 64
    decoder_depth: int = 1
    # "linear": one strided Conv3d per tubelet (VideoMAE); "conv": a small 3-layer conv stem reaching
    # the same token grid, whose local filters see thin limbs and short motions a linear patch misses
    stem: str = "linear"
    stem_width: int = 16
    # "rgb": frames only; "rgb+diff": frames and their temporal differences (6 input channels), so
    # motion is explicit rather than drowned by the static background a small model memorises first
    inputs: str = "rgb"
    # reconstruction target of the hidden tubelets: "pixels" (normalised frames: colour and brightness
    # kept, so the tokens must carry appearance as a foundation model's do) or "patch_norm" (each
    # tubelet standardised, VideoMAE's norm_pix_loss: a patch's mean brightness and contrast are lost)
    target: str = "pixels"
    # "joint": one transformer over all input channels; "two_stream": an appearance pathway over the
    # frames and a motion pathway over their differences (inputs must be "rgb+diff"), each dim / 2
    # wide with its own stem and transformer, tokens concatenated on the same grid. Pixel
    # reconstruction keeps colour in one pathway while the action loss shapes the other, instead of
    # the two trading off inside one small model.
    pathways: str = "joint"

    def check(self) -> None:
        """ModelError for a geometry the tubelet embedding cannot tile."""
        problems = []
        if self.dim % self.heads:
            problems.append(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.frames % self.tubelet:
            problems.append(f"frames {self.frames} is not divisible by tubelet {self.tubelet}")
        if self.height % self.patch or self.width % self.patch:
            problems.append(f"frame size {self.height}x{self.width} is not divisible by patch {self.patch}")
        if self.positions not in ("learned", "sinusoidal"):
            problems.append(f"positions {self.positions!r} is not 'learned' or 'sinusoidal'")
        if self.inputs not in ("rgb", "rgb+diff", "diff"):
            problems.append(f"inputs {self.inputs!r} is not 'rgb', 'rgb+diff' or 'diff'")
        if self.target not in ("pixels", "patch_norm"):
            problems.append(f"target {self.target!r} is not 'pixels' or 'patch_norm'")
        if self.pathways not in ("joint", "two_stream"):
            problems.append(f"pathways {self.pathways!r} is not 'joint' or 'two_stream'")
        elif self.pathways == "two_stream" and (
            self.inputs != "rgb+diff" or self.dim % 2 or (self.dim // 2) % self.heads
        ):
            problems.append("two_stream pathways need inputs 'rgb+diff' and dim / 2 divisible by heads")
        if self.stem not in ("linear", "conv"):
            problems.append(f"stem {self.stem!r} is not 'linear' or 'conv'")
        if self.stem == "conv" and (self.patch % 4 or self.tubelet % 2 or self.stem_width <= 0):
            problems.append("the conv stem needs patch divisible by 4, an even tubelet and stem_width > 0")
        if min(self.dim, self.depth, self.heads, self.tubelet, self.patch, self.frames) <= 0:
            problems.append("sizes must be positive")
        if problems:
            raise ModelError("built-in encoder config: " + "; ".join(problems))

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.frames // self.tubelet, self.height // self.patch, self.width // self.patch

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def patch_pixels(self) -> int:
        return 3 * self.tubelet * self.patch * self.patch


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    """(n, dim) fixed sine/cosine position table, as in the original transformer."""
    position = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class Block(nn.Module):
    """Pre-norm transformer block with fused SDPA attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


DIFF_SCALE = 4.0  # frame differences are small next to normalised pixels


def input_channels(config: BuiltinConfig) -> int:
    return {"rgb": 3, "diff": 3, "rgb+diff": 6}[config.inputs]


def normalise_pixels(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) frames in [0, 1] standardised per channel with the ImageNet statistics."""
    return (video - video.new_tensor(PIXEL_MEAN).view(1, 3, 1, 1, 1)) / video.new_tensor(PIXEL_STD).view(1, 3, 1, 1, 1)


def model_inputs(video: torch.Tensor, config: BuiltinConfig, rgb_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised frames and/or their forward differences (the last difference repeated), channels first.

    ``rgb_scale`` (B,) multiplies the normalised frames next to the differences (training only: 0 hides
    a clip's appearance, leaving its motion); ignored unless ``inputs`` is "rgb+diff".
    """
    x = normalise_pixels(video)
    if config.inputs == "rgb":
        return x
    diff = video[:, :, 1:] - video[:, :, :-1]
    diff = torch.cat([diff, diff[:, :, -1:]], dim=2) * DIFF_SCALE
    if rgb_scale is not None and config.inputs == "rgb+diff":
        x = x * rgb_scale.view(-1, 1, 1, 1, 1)
    return diff if config.inputs == "diff" else torch.cat([x, diff], dim=1)


def conv_stem(config: BuiltinConfig, channels: int, dim: int) -> nn.Sequential:
    """Three 3D convolutions whose strides multiply to (tubelet, patch, patch): the linear embedding's grid."""
    width = config.stem_width
    return nn.Sequential(
        nn.Conv3d(channels, width, kernel_size=3, stride=(1, 2, 2), padding=1),
        nn.GELU(),
        nn.Conv3d(width, 2 * width, kernel_size=3, stride=(2, 2, 2), padding=1),
        nn.GELU(),
        nn.Conv3d(
            2 * width,
            dim,
            kernel_size=(config.tubelet // 2, config.patch // 4, config.patch // 4),
            stride=(config.tubelet // 2, config.patch // 4, config.patch // 4),
        ),
    )


def token_embedding(config: BuiltinConfig, channels: int, dim: int) -> nn.Module:
    if config.stem == "conv":
        return conv_stem(config, channels, dim)
    return nn.Conv3d(
        channels,
        dim,
        kernel_size=(config.tubelet, config.patch, config.patch),
        stride=(config.tubelet, config.patch, config.patch),
    )


class Pathway(nn.Module):
    """Embedding + positions + transformer blocks + final norm over one group of input channels."""

    def __init__(self, config: BuiltinConfig, channels: int, dim: int):
        super().__init__()
        self.embed = token_embedding(config, channels, dim)
        if config.positions == "learned":
            self.positions = nn.Parameter(torch.randn(1, config.num_tokens, dim) * 0.02)
        else:
            self.register_buffer("positions", sinusoidal_positions(config.num_tokens, dim)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(dim, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim)

    def embedded(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) embedded tokens with positions, before the transformer."""
        return self.embed(x).flatten(2).transpose(1, 2) + self.positions

    def encode(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        if keep is not None:
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(self.embedded(x), keep)


class VideoEncoder(nn.Module):
    """Tubelet embedding + transformer; ``forward`` gives the (B, dim) mean-pooled feature."""

    def __init__(self, config: BuiltinConfig):
        super().__init__()
        config.check()
        self.config = config
        if config.pathways == "two_stream":
            self.appearance = Pathway(config, 3, config.dim // 2)
            self.motion = Pathway(config, 3, config.dim // 2)
            return
        self.embed = token_embedding(config, input_channels(config), config.dim)
        if config.positions == "learned":
            self.positions = nn.Parameter(torch.randn(1, config.num_tokens, config.dim) * 0.02)
        else:
            self.register_buffer(
                "positions", sinusoidal_positions(config.num_tokens, config.dim)[None], persistent=False
            )
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)

    def check_input(self, video: torch.Tensor) -> None:
        c = self.config
        expected = (3, c.frames, c.height, c.width)
        if video.dim() != 5 or tuple(video.shape[1:]) != expected:
            raise ModelError(
                f"built-in encoder takes (B, {', '.join(map(str, expected))}) clips, got {tuple(video.shape)}"
            )

    def embedded(self, video: torch.Tensor, rgb_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Each pathway's (B, N, width) embedded tokens with positions: the convolutional part,
        which a masked pass and a full pass over the same clips can share."""
        self.check_input(video)
        x = model_inputs(video, self.config, rgb_scale)
        if self.config.pathways == "two_stream":
            return self.appearance.embedded(x[:, :3]), self.motion.embedded(x[:, 3:])
        return (self.embed(x).flatten(2).transpose(1, 2) + self.positions,)

    def encode(self, embedded: tuple[torch.Tensor, ...], keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N or K, dim) final tokens from ``embedded``; ``keep`` (B, K) token indices encodes only those."""
        if self.config.pathways == "two_stream":
            return torch.cat([self.appearance.encode(embedded[0], keep), self.motion.encode(embedded[1], keep)], dim=-1)
        x = embedded[0]
        if keep is not None:
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def tokens(
        self, video: torch.Tensor, keep: torch.Tensor | None = None, rgb_scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, N, dim) final tokens; ``keep`` (B, K) token indices encodes only those (masked modelling)."""
        return self.encode(self.embedded(video, rgb_scale), keep)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.tokens(video).mean(dim=1)


def count_parameters(module: nn.Module) -> int:
    return int(sum(np.prod(p.shape) for p in module.parameters()))
