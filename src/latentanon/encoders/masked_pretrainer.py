"""The built-in encoder's pretraining model: VideoMAE tube masking, a light decoder reconstructing
the hidden tubelets, and the action and appearance heads on the pooled feature."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentanon.encoders.builtin import Block, BuiltinConfig, VideoEncoder, normalise_pixels, sinusoidal_positions
from latentanon.errors import ModelError


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
