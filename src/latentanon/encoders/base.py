"""What every frozen encoder offers extraction: uint8 clips in, pooled float32 features out."""

from __future__ import annotations

import abc
import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from latentanon.errors import ModelError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto", setting: str = "device") -> torch.device:
    """``auto`` picks a GPU when there is one; an explicit ``cuda`` never falls back to the CPU.

    A task that was given a GPU (the pipeline compiled for GPUs asks for ``cuda``) and finds none
    has a broken image or node: it must stop rather than hold the GPU and run on the CPU.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"{setting}: {device!r} is not a torch device") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
        raise ModelError(
            f"{setting}: {device!r} asked for, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built for {build}). Run this stage on a GPU node with the "
            f"image's CUDA variant, or set {setting} to auto or cpu."
        )
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """auto: bf16 autocast on a GPU, exact float32 on a CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ModelError(f"dtype {dtype!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


class ClipEncoder(abc.ABC):
    """A frozen video encoder behind one call: ``encode((B, T, H, W, 3) uint8) -> (B, dim) float32``.

    Clips of any length and frame size are resampled to the model's own frame count
    (``clip_frames``, evenly spaced frame indices) and frame size (bilinear, antialiased).
    Subclasses set ``dim``, ``clip_frames``, ``frame_size``, ``identity`` and ``model`` and
    implement ``pooled(video)`` on (B, 3, clip_frames, H, W) floats in [0, 1].
    """

    dim: int
    clip_frames: int
    frame_size: tuple[int, int]
    identity: str
    model: torch.nn.Module

    def __init__(self, device: str = "auto", dtype: str = "auto"):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)

    @abc.abstractmethod
    def pooled(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, clip_frames, h, w) in [0, 1] -> (B, dim), pooled the way the model is meant to be."""

    def describe(self) -> dict:
        return {
            "identity": self.identity,
            "dim": self.dim,
            "clip_frames": self.clip_frames,
            "frame_size": list(self.frame_size),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    def prepare(self, clips: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> (B, 3, clip_frames, h, w) float in [0, 1] on the model's device."""
        shape = tuple(clips.shape)
        if len(shape) != 5 or shape[-1] != 3 or min(shape) <= 0:
            raise ModelError(f"{self.identity}: clips must be (B, T, H, W, 3) with no empty axis, got {shape}")
        if clips.dtype not in (np.uint8, torch.uint8):
            raise ModelError(f"{self.identity}: clips must be uint8 frames, got {clips.dtype}")
        x = torch.as_tensor(clips)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        b, t, h, w, _ = shape
        frames = self.frames_for(t)
        if t != frames:
            idx = torch.from_numpy(np.linspace(0, t - 1, frames).round().astype(np.int64))
            x = x.index_select(1, idx.to(x.device))
        x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)  # (B, T, 3, H, W)
        if (h, w) != tuple(self.frame_size):
            x = (
                F.interpolate(
                    x.reshape(b * frames, 3, h, w),
                    size=self.frame_size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
                .clamp_(0.0, 1.0)
                .reshape(b, frames, 3, *self.frame_size)
            )
        return x.transpose(1, 2).contiguous()

    def frames_for(self, input_frames: int) -> int:
        """How many frames the model takes for a clip of ``input_frames`` frames."""
        return self.clip_frames

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def encode_tensor(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled features of prepared clips, float32 on the model's device."""
        with self.autocast():
            return self.pooled(video).float()

    def encode(self, clips: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.encode_tensor(self.prepare(clips)).cpu().numpy().astype(np.float32, copy=False)


class BuiltinEncoder(ClipEncoder):
    """The pipeline's own pretrained encoder, loaded from its directory (models/encoder)."""

    def __init__(self, directory, device: str = "auto", dtype: str = "auto"):
        from latentanon.encoders.builtin_files import load_builtin

        super().__init__(device, dtype)
        model, meta = load_builtin(directory)
        self.model = model.to(self.device)
        self.meta = meta
        config = model.config
        self.dim = config.dim
        self.clip_frames = config.frames
        self.frame_size = (config.height, config.width)
        self.identity = meta["identity"]

    def pooled(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video)
