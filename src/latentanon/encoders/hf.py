"""Hugging Face video encoders from a local directory, pooled the way each model is meant to be pooled.

Supported ``config.model_type``: videomae, timesformer, vjepa2. The directory is what
``save_pretrained`` writes (config.json + weights), optionally with the model's
(video_)preprocessor_config.json whose image_mean / image_std are then used. Never touches the hub.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from latentanon.encoders.base import ClipEncoder
from latentanon.encoders.builtin_files import file_sha256
from latentanon.errors import ModelError

PREPROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class Geometry:
    """What one model type needs to know: input sizes, input name, pooling."""

    frames: int
    height: int
    width: int
    tubelet: int
    patch: tuple[int, int]
    input_name: str
    pooling: str  # "mean", "cls", "mean_fc_norm"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    keep_input_frames: bool = False  # RoPE models (V-JEPA 2) take any multiple of the tubelet


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
KINETICS = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))  # TimeSformer checkpoints' processor stats


def _pair(value, name: str, where: Path) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise ModelError(f"{where}: {name} {value!r} is not an int or a pair")


def _geometry(config, directory: Path, has_fc_norm: bool) -> Geometry:
    kind = config.model_type
    where = directory / "config.json"
    if kind == "videomae":
        h, w = _pair(config.image_size, "image_size", where)
        # mean of the last hidden state; the classification checkpoints' fc_norm when the config pools by mean
        pooling = "mean_fc_norm" if config.use_mean_pooling and has_fc_norm else "mean"
        geometry = Geometry(
            config.num_frames,
            h,
            w,
            config.tubelet_size,
            _pair(config.patch_size, "patch_size", where),
            "pixel_values",
            pooling,
            *IMAGENET,
        )
    elif kind == "timesformer":
        h, w = _pair(config.image_size, "image_size", where)
        geometry = Geometry(
            config.num_frames, h, w, 1, _pair(config.patch_size, "patch_size", where), "pixel_values", "cls", *KINETICS
        )
    elif kind == "vjepa2":
        h = w = int(config.crop_size)
        geometry = Geometry(
            config.frames_per_clip,
            h,
            w,
            config.tubelet_size,
            _pair(config.patch_size, "patch_size", where),
            "pixel_values_videos",
            "mean",
            *IMAGENET,
            keep_input_frames=True,
        )
    else:
        raise ModelError(
            f"{where}: model_type {kind!r} is not a supported video encoder (supported: {', '.join(SUPPORTED)})"
        )
    problems = []
    if geometry.frames % geometry.tubelet:
        problems.append(f"{geometry.frames} frames are not a multiple of the tubelet size {geometry.tubelet}")
    if geometry.height % geometry.patch[0] or geometry.width % geometry.patch[1]:
        problems.append(f"frame size {geometry.height}x{geometry.width} is not a multiple of patch {geometry.patch}")
    if problems:
        raise ModelError(f"{where}: input sizes this encoder cannot take: " + "; ".join(problems))
    return geometry


SUPPORTED = ("videomae", "timesformer", "vjepa2")


def _normalisation(directory: Path, fallback: tuple) -> tuple[tuple, tuple]:
    for name in PREPROCESSOR_FILES:
        path = directory / name
        if path.exists():
            try:
                spec = json.loads(path.read_text())
            except ValueError as exc:
                raise ModelError(f"{path}: not valid JSON ({exc})") from exc
            if "image_mean" in spec and "image_std" in spec:
                return tuple(spec["image_mean"]), tuple(spec["image_std"])
    return fallback


def _weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())


def _head_tensors(directory: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Tensors under ``prefix`` in the checkpoint's safetensors files (heads AutoModel drops)."""
    from safetensors import safe_open

    found = {}
    for path in _weight_files(directory):
        if path.suffix != ".safetensors":
            continue
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 (safe_open is no dict: keys() is its API)
                if key.startswith(prefix):
                    found[key[len(prefix) :]] = fh.get_tensor(key)
    return found


class HFVideoEncoder(ClipEncoder):
    """A transformers video model from ``directory`` behind the ClipEncoder interface."""

    def __init__(self, directory: str | Path, device: str = "auto", dtype: str = "auto"):
        super().__init__(device, dtype)
        directory = Path(directory)
        if not directory.is_dir():
            raise ModelError(f"{directory}: Hugging Face encoder directory not found")
        if not (directory / "config.json").exists():
            raise ModelError(f"{directory / 'config.json'}: missing (expected a save_pretrained directory)")
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        except (ValueError, KeyError, OSError) as exc:
            raise ModelError(f"{directory / 'config.json'}: not a usable transformers config ({exc})") from exc
        fc_norm = _head_tensors(directory, "fc_norm.") if config.model_type == "videomae" else {}
        self.geometry = _geometry(config, directory, bool(fc_norm))
        if not _weight_files(directory):
            raise ModelError(f"{directory}: no weights (*.safetensors or *.bin) next to config.json")
        self.model = self._load_model(config, directory).to(self.device).eval().requires_grad_(False)
        self.fc_norm = None
        if self.geometry.pooling == "mean_fc_norm":
            self.fc_norm = torch.nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.fc_norm.load_state_dict(fc_norm)
            self.fc_norm.to(self.device).eval().requires_grad_(False)
        mean, std = _normalisation(directory, (self.geometry.mean, self.geometry.std))
        self.pixel_mean = torch.tensor(mean, device=self.device).view(1, 1, 3, 1, 1)
        self.pixel_std = torch.tensor(std, device=self.device).view(1, 1, 3, 1, 1)
        self.model_type = config.model_type
        self.dim = int(config.hidden_size)
        self.clip_frames = self.geometry.frames
        self.frame_size = (self.geometry.height, self.geometry.width)
        files = [directory / "config.json", *_weight_files(directory)]
        self.identity = f"hf:{config.model_type}:{file_sha256(*files)[:16]}"

    @staticmethod
    def _load_model(config, directory: Path) -> torch.nn.Module:
        from transformers import AutoModel
        from transformers.models.auto.modeling_auto import MODEL_MAPPING
        from transformers.utils import logging as hf_logging

        # fused SDPA attention where the architecture has it; TimeSformer only has eager attention
        model_class = MODEL_MAPPING[type(config)]
        attention = "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"
        verbosity = hf_logging.get_verbosity()
        # a classification checkpoint's head keys are expected to be left out: no load report for them
        hf_logging.set_verbosity_error()
        try:
            return AutoModel.from_pretrained(str(directory), local_files_only=True, attn_implementation=attention)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{directory}: cannot load the model weights ({exc})") from exc
        finally:
            hf_logging.set_verbosity(verbosity)

    def frames_for(self, input_frames: int) -> int:
        if not self.geometry.keep_input_frames:
            return self.clip_frames
        # RoPE positions take any length: the clip's own frames, cut to a multiple of the tubelet
        usable = min(self.geometry.frames, input_frames - input_frames % self.geometry.tubelet)
        return max(usable, self.geometry.tubelet)

    def pooled(self, video: torch.Tensor) -> torch.Tensor:
        x = (video.transpose(1, 2) - self.pixel_mean) / self.pixel_std  # (B, T, 3, H, W)
        kwargs = {"skip_predictor": True} if self.model_type == "vjepa2" else {}
        tokens = self.model(**{self.geometry.input_name: x}, **kwargs).last_hidden_state
        if self.geometry.pooling == "cls":
            return tokens[:, 0]
        pooled = tokens.mean(dim=1)
        return self.fc_norm(pooled) if self.fc_norm is not None else pooled

    def describe(self) -> dict:
        return {**super().describe(), "model_type": self.model_type, "pooling": self.geometry.pooling}
