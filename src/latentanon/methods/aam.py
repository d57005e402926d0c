"""The Anonymizing Adapter Module: residual self-attention over one video's feature sequence."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from latentanon._configtools import from_dict
from latentanon.errors import ModelError
from latentanon.methods.config import AdapterConfig


class AttentionBlock(nn.Module):
    """x + MHSA(x) (no norm, as in the paper), then optionally x + MLP(LayerNorm(x))."""

    def __init__(self, dim: int, heads: int, mlp: bool, mlp_ratio: float):
        super().__init__()
        if dim % heads:
            raise ModelError(f"adapter: feature width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp: nn.Sequential | None = None
        if mlp:
            hidden = max(1, int(dim * mlp_ratio))
            self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # key_mask (B, T): True where a real clip; padded keys are never attended, so a clip only
        # ever sees clips of its own video.
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        if self.mlp is not None:
            x = x + self.mlp(x)
        return x


class AAM(nn.Module):
    """Shape-preserving (B, T, d) -> (B, T, d); starts as the exact identity."""

    def __init__(self, dim: int, config: AdapterConfig = AdapterConfig()):
        super().__init__()
        self.dim = dim
        self.config = config
        self.blocks = nn.ModuleList(
            AttentionBlock(dim, config.heads, config.mlp, config.mlp_ratio) for _ in range(config.blocks)
        )
        self.reset_to_identity()

    @torch.no_grad()
    def reset_to_identity(self) -> None:
        """Zero every residual branch's last layer: the module then returns its input exactly."""
        for block in self.blocks:
            assert isinstance(block, AttentionBlock)  # __init__ fills blocks with these only
            nn.init.zeros_(block.proj.weight)
            nn.init.zeros_(block.proj.bias)
            if block.mlp is not None:
                last = block.mlp[-1]
                assert isinstance(last, nn.Linear)  # the MLP ends in its output Linear
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 2:  # a single sequence (T, d)
            return self.forward(x[None], None if mask is None else mask[None])[0]
        if x.shape[-1] != self.dim:
            raise ModelError(f"adapter expects features of width {self.dim}, got {x.shape[-1]}")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        for block in self.blocks:
            x = block(x, mask)
        return x * mask[..., None]


def save_adapter(model: AAM, directory: str | Path, extra: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "adapter.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(directory / "adapter.safetensors")
    config = {"dim": model.dim, "adapter": asdict(model.config), **(extra or {})}
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory


def load_adapter(directory: str | Path, device: str = "cpu") -> AAM:
    directory = Path(directory)
    weights, config_path = directory / "adapter.safetensors", directory / "config.json"
    for path in (weights, config_path):
        if not path.exists():
            raise ModelError(f"{path}: adapter file missing")
    config = json.loads(config_path.read_text())
    model = AAM(int(config["dim"]), from_dict(AdapterConfig, config["adapter"], f"{config_path}:adapter"))
    try:
        model.load_state_dict(load_file(str(weights), device=device))
    except RuntimeError as exc:
        raise ModelError(f"{weights}: does not match {config_path}: {exc}") from exc
    return model.eval()


def aam_state(model: AAM) -> dict:
    """An AAM's weights as numpy arrays (a method's saved state)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def aam_from_state(dim: int, config, state) -> AAM:
    """The AAM that ``aam_state`` saved, in eval mode."""
    import numpy as np

    model = AAM(dim, config)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return model.eval()
