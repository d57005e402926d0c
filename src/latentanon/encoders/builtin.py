"""The built-in video encoder: a small VideoMAE-style transformer, its pretraining heads and its files.

Input clips are (B, 3, T, H, W) floats in [0, 1]; the model normalises them itself (and, with
``inputs: rgb+diff``, adds their temporal differences as channels). Tokens come from a tubelet
embedding (``tubelet`` frames x ``patch`` x ``patch`` pixels; linear or a small conv stem with the
same grid); the pooled output is the mean of the final (layer-normed) tokens, of width ``dim``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from latentanon._configtools import ConfigError, from_dict
from latentanon._files import atomic_path, write_json_atomic
from latentanon.errors import ModelError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
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


def patchify(video: torch.Tensor, config: BuiltinConfig) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, N, 3*tubelet*patch*patch) in the token order of the tubelet embedding."""
    b = video.shape[0]
    t, h, w = config.grid
    x = video.reshape(b, 3, t, config.tubelet, h, config.patch, w, config.patch)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, t * h * w, config.patch_pixels)


def reconstruction_targets(video: torch.Tensor, config: BuiltinConfig) -> torch.Tensor:
    """(B, N, patch_pixels) what the decoder must predict for every tubelet (see ``BuiltinConfig.target``)."""
    if config.target == "pixels":
        return patchify(normalise_pixels(video), config)
    target = patchify(video, config)
    return (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()


def tube_mask(
    batch: int, config: BuiltinConfig, ratio: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """VideoMAE tube masking: the same spatial patches hidden in every time slot.

    Returns (keep, hidden) token indices, each (B, K) sorted ascending.
    """
    t, h, w = config.grid
    spatial = h * w
    n_hidden = min(spatial - 1, max(1, int(round(spatial * ratio))))
    order = torch.argsort(torch.rand(batch, spatial, generator=generator), dim=1)
    hidden_spatial, keep_spatial = order[:, :n_hidden], order[:, n_hidden:]
    offsets = (torch.arange(t) * spatial)[None, :, None]

    def expand(idx: torch.Tensor) -> torch.Tensor:
        return torch.sort((idx[:, None, :] + offsets).reshape(batch, -1), dim=1).values

    return expand(keep_spatial), expand(hidden_spatial)


class MaskedVideoPretrainer(nn.Module):
    """Encoder + light decoder reconstructing hidden tubelets, + a linear action head on the pooled feature."""

    decoder_positions: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, config: BuiltinConfig):
        super().__init__()
        self.encoder = VideoEncoder(config)
        self.config = config
        self.to_decoder = nn.Linear(config.dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        self.register_buffer(
            "decoder_positions", sinusoidal_positions(config.num_tokens, config.decoder_dim)[None], persistent=False
        )
        heads = max(1, config.decoder_dim // 32)
        self.decoder = nn.ModuleList(Block(config.decoder_dim, heads, 4.0) for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(config.decoder_dim)
        self.to_pixels = nn.Linear(config.decoder_dim, config.patch_pixels)
        self.classifier = nn.Linear(config.dim, config.num_classes) if config.num_classes > 0 else None
        self.attribute_head = nn.Linear(config.dim, sum(config.attribute_classes)) if config.attribute_classes else None
        nn.init.normal_(self.mask_token, std=0.02)

    def losses(
        self, video: torch.Tensor, keep: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction MSE on hidden tubelets, action logits).

        Targets follow ``config.target`` (see BuiltinConfig). The action head reads every
        token in a second pass, as extraction does: visible tokens alone would often miss the actor.
        """
        return self.reconstruction_loss(video, keep, hidden), self.logits(video)

    def reconstruction_loss(
        self,
        video: torch.Tensor,
        keep: torch.Tensor,
        hidden: torch.Tensor,
        embedded: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """MSE of the decoder's prediction of the hidden tubelets from one pass over the visible tokens
        (``embedded``: the encoder's embedding of ``video``, when already computed)."""
        if embedded is None:
            embedded = self.encoder.embedded(video)
        visible = self.to_decoder(self.encoder.encode(embedded, keep))
        b, n = video.shape[0], self.config.num_tokens
        full = self.mask_token.expand(b, n, -1).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, full.shape[-1]), visible)
        x = full + self.decoder_positions
        for block in self.decoder:
            x = block(x)
        pred = self.to_pixels(self.decoder_norm(x))
        pick = hidden[..., None].expand(-1, -1, pred.shape[-1])
        pred = torch.gather(pred, 1, pick)
        target = torch.gather(reconstruction_targets(video, self.config), 1, pick)
        return F.mse_loss(pred, target)

    def logits(self, video: torch.Tensor, rgb_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Action logits from the pooled feature of all tokens (``rgb_scale``: see ``model_inputs``)."""
        if self.classifier is None:
            raise ModelError("built-in pretrainer has no action head (num_classes = 0)")
        return self.classifier(self.encoder.tokens(video, rgb_scale=rgb_scale).mean(dim=1))

    def heads(
        self,
        video: torch.Tensor,
        rgb_scale: torch.Tensor | None = None,
        embedded: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Action logits and one logit tensor per appearance attribute, from one pass over all tokens."""
        if self.classifier is None:
            raise ModelError("built-in pretrainer has no action head (num_classes = 0)")
        if embedded is None:
            embedded = self.encoder.embedded(video, rgb_scale)
        pooled = self.encoder.encode(embedded).mean(dim=1)
        attributes = (
            []
            if self.attribute_head is None
            else list(torch.split(self.attribute_head(pooled), list(self.config.attribute_classes), dim=1))
        )
        return self.classifier(pooled), attributes

    def training_outputs(
        self, video: torch.Tensor, keep: torch.Tensor, hidden: torch.Tensor, rgb_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(reconstruction loss, action logits, attribute logits) of one training step. Without
        ``rgb_scale`` both passes see the same inputs, so the convolutional embedding (about half
        of a step's time) is computed once and shared."""
        shared = self.encoder.embedded(video) if rgb_scale is None else None
        recon = self.reconstruction_loss(video, keep, hidden, shared)
        logits, attributes = self.heads(video, rgb_scale, shared)
        return recon, logits, attributes


def file_sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def save_builtin(encoder: VideoEncoder, directory: str | Path, extra: dict | None = None) -> str:
    """Write model.safetensors and config.json atomically; return the encoder identity."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp_weights:
        save_file(weights, str(tmp_weights), metadata={"format": "pt"})
        identity = "builtin:" + file_sha256(tmp_weights)[:16]
    meta = {"kind": "builtin", "identity": identity, "architecture": asdict(encoder.config), **(extra or {})}
    write_json_atomic(directory / CONFIG_FILE, meta)
    return identity


def load_builtin(directory: str | Path) -> tuple[VideoEncoder, dict]:
    """The frozen encoder (eval mode, no gradients) and its config.json contents."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: built-in encoder directory not found (run the pretrain_encoder stage)")
    weights_path, config_path = directory / WEIGHTS_FILE, directory / CONFIG_FILE
    for path in (weights_path, config_path):
        if not path.exists():
            raise ModelError(f"{path}: built-in encoder file missing")
    try:
        meta = json.loads(config_path.read_text())
        config = from_dict(BuiltinConfig, meta["architecture"], f"{config_path}:architecture")
    except (ValueError, KeyError, ConfigError) as exc:
        raise ModelError(f"{config_path}: not a built-in encoder config ({exc})") from exc
    identity = "builtin:" + file_sha256(weights_path)[:16]
    if meta.get("identity") != identity:
        raise ModelError(f"{weights_path}: weights do not match the identity recorded in {config_path}")
    encoder = VideoEncoder(config)
    try:
        encoder.load_state_dict(load_file(str(weights_path)))
    except RuntimeError as exc:
        raise ModelError(f"{weights_path}: does not match {config_path}: {exc}") from exc
    encoder.eval().requires_grad_(False)
    return encoder, meta


def count_parameters(module: nn.Module) -> int:
    return int(sum(np.prod(p.shape) for p in module.parameters()))


def is_builtin_dir(directory: str | Path) -> bool:
    """True when ``directory`` holds a built-in encoder's config.json."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("kind") == "builtin"
    except ValueError:
        return False


def hf_reference(directory: str | Path) -> Path | None:
    """The Hugging Face model directory an encoder directory points to (pretrain with encoder: hf:<dir>)."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except ValueError:
        return None
    return Path(meta["source"]) if meta.get("kind") == "hf_ref" and meta.get("source") else None
