"""Training the built-in encoder: clips sampled from the decoded videos (flips and shifts, a share
made static), masked reconstruction plus action and appearance losses on a cosine schedule, and
a training state saved as it goes, from which a killed run resumes bitwise."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from latentanon._files import atomic_path, load_matching_checkpoint
from latentanon.data.config import DataConfig
from latentanon.encoders.builtin import BuiltinConfig, count_parameters
from latentanon.encoders.config import PretrainConfig
from latentanon.encoders.masked_pretrainer import MaskedVideoPretrainer, tube_mask
from latentanon.errors import DataError


def rgb_keep(batch: int, dropout: float, generator: torch.Generator) -> torch.Tensor | None:
    """(B,) 0/1 factors hiding the frames of a ``dropout`` share of clips from the action head."""
    if dropout <= 0:
        return None
    return (torch.rand(batch, generator=generator) >= dropout).float()


def appearance_labels(manifest: pd.DataFrame, cfg: PretrainConfig) -> dict[str, np.ndarray]:
    """attribute -> (n_rows,) class ids (-1 unknown) for the appearance heads; {} when switched off.

    Only the rows being trained on are read: the pretraining people and the train split of the
    extra sets, never a val or test person. Attributes the manifest lacks (real datasets without
    sidecars) get no head.
    """
    if cfg.appearance_weight <= 0:
        return {}
    out = {}
    for attribute in cfg.appearance_attributes:
        if attribute not in manifest.columns:
            continue
        values = pd.to_numeric(manifest[attribute], errors="coerce").to_numpy(dtype=np.float64)
        labels = np.where(np.isfinite(values), values, -1).astype(np.int64)
        if labels.max(initial=-1) >= 1:
            out[attribute] = labels
    return out


def make_static(clips: torch.Tensor, share: float, rng: np.random.Generator) -> np.ndarray:
    """Turn a ``share`` of the clips, in place, into static clips (one random frame tiled); (B,) bool."""
    still = rng.random(clips.shape[0]) < share
    for i in np.flatnonzero(still):
        frame = int(rng.integers(clips.shape[2]))
        clips[i] = clips[i, :, frame : frame + 1].expand_as(clips[i]).clone()
    return still


def load_videos(manifest: pd.DataFrame, data_root: Path, height: int, width: int) -> list[torch.Tensor]:
    """Every video as a (T, 3, height, width) uint8 tensor; a video stored at another size is
    resized in the decoder (cover + centre crop), so no full-size frame is ever held."""
    from latentanon.data.video_io import read_video

    videos = []
    for path in tqdm(list(manifest["path"]), desc="decode pretrain", unit="video", disable=None):
        frames = read_video(Path(data_root) / path, size=(height, width))
        videos.append(torch.from_numpy(frames).permute(0, 3, 1, 2))
    return videos


def sample_clips(
    videos: list[torch.Tensor], index: np.ndarray, frames: int, rng: np.random.Generator, random_start: bool = True
) -> torch.Tensor:
    """(B, 3, frames, H, W) floats in [0, 1]: one clip per chosen video, random (or centred) start."""
    clips = []
    for i in index:
        video = videos[i]
        last = max(0, video.shape[0] - frames)
        start = int(rng.integers(0, last + 1)) if random_start else last // 2
        idx = torch.clamp(torch.arange(start, start + frames), max=video.shape[0] - 1)
        clips.append(video[idx])
    return torch.stack(clips).permute(0, 2, 1, 3, 4).float().div_(255.0)


def augment(clips: torch.Tensor, rng: np.random.Generator, max_shift: int = 3) -> torch.Tensor:
    """Random horizontal flip and a small translation (edge-padded) per clip: fewer shortcuts to memorise."""
    out = torch.empty_like(clips)
    h, w = clips.shape[-2:]
    padded = F.pad(clips.flatten(1, 2), (max_shift,) * 4, mode="replicate").view(
        *clips.shape[:3], h + 2 * max_shift, w + 2 * max_shift
    )
    for i in range(clips.shape[0]):
        dy, dx = rng.integers(0, 2 * max_shift + 1, size=2)
        clip = padded[i, :, :, dy : dy + h, dx : dx + w]
        out[i] = clip.flip(-1) if rng.random() < 0.5 else clip
    return out


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model: MaskedVideoPretrainer, videos, labels: np.ndarray, cfg: PretrainConfig, frames: int) -> dict:
    model.eval()
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 1)
    recon, correct = [], 0
    for lo in range(0, len(videos), cfg.batch_size):
        index = np.arange(lo, min(len(videos), lo + cfg.batch_size))
        clips = sample_clips(videos, index, frames, rng, random_start=False)
        keep, hidden = tube_mask(len(index), model.config, cfg.mask_ratio, gen)
        recon.append(model.reconstruction_loss(clips, keep, hidden).item() * len(index))
        correct += int((model.logits(clips).argmax(1).numpy() == labels[index]).sum())
    model.train()
    return {"val_reconstruction": sum(recon) / len(videos), "val_accuracy": correct / len(videos)}


# ----------------------------------------------------------------------------- checkpoints


def save_training_state(path: Path, state: dict) -> None:
    """torch.save to a hidden temp file renamed into place: a kill mid-write keeps the last good one."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)


def load_training_state(path: Path | None, fingerprint: str) -> dict | None:
    """The saved training state of this very run (same fingerprint), or None to start afresh."""
    return load_matching_checkpoint(path, "fingerprint", fingerprint, "pretrain_encoder")


def _numpy_state(rng: np.random.Generator) -> dict:
    state = rng.bit_generator.state  # PCG64: plain ints and strings, safe for weights_only loading
    return {
        "bit_generator": state["bit_generator"],
        "state": dict(state["state"]),
        "has_uint32": state["has_uint32"],
        "uinteger": state["uinteger"],
    }


def train_builtin(
    cfg: PretrainConfig,
    data_cfg: DataConfig,
    manifest: pd.DataFrame,
    data_root: Path,
    checkpoint: Path | None = None,
    fingerprint: str = "",
) -> tuple:
    """Train and return (frozen encoder, history, info).

    With ``checkpoint``, the whole training state (weights, optimiser, step of the schedule, the
    epoch's data order and position, numpy and torch RNG states, partial epoch sums) is saved
    there every ``cfg.checkpoint_every_steps`` steps, and a saved state with the same
    ``fingerprint`` is resumed: the result is bitwise that of an uninterrupted run.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    labels = manifest["label_id"].to_numpy().astype(np.int64)
    arch = BuiltinConfig(
        dim=cfg.dim,
        depth=cfg.depth,
        heads=cfg.heads,
        tubelet=cfg.tubelet,
        patch=cfg.patch,
        frames=data_cfg.clip_frames,
        height=data_cfg.height,
        width=data_cfg.width,
        positions=cfg.positions,
        num_classes=int(labels.max()) + 1,
        decoder_dim=cfg.decoder_dim,
        decoder_depth=cfg.decoder_depth,
        stem=cfg.stem,
        stem_width=cfg.stem_width,
        inputs=cfg.inputs,
        target=cfg.target,
        pathways=cfg.pathways,
    )
    appearance = appearance_labels(manifest, cfg)
    arch = replace(arch, attribute_classes=tuple(int(v.max()) + 1 for v in appearance.values()))
    model = MaskedVideoPretrainer(arch)
    videos = load_videos(manifest, data_root, data_cfg.height, data_cfg.width)
    is_train = (manifest["split"] == "train").to_numpy()
    train_idx = np.flatnonzero(is_train)
    val_idx = np.flatnonzero(~is_train)
    if len(train_idx) == 0:
        raise DataError("pretrain manifest has no rows with split 'train'")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rgb_dropout = cfg.rgb_dropout if cfg.inputs == "rgb+diff" else 0.0  # only frames next to differences can hide
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(0.1 * total))
    history, step = [], 0
    order: np.ndarray | None  # this epoch's train rows, drawn at its start or restored
    sums: dict[str, float] | None  # this epoch's running loss sums
    first_epoch, order, first_lo, sums = 1, None, 0, None
    resumed = load_training_state(checkpoint, fingerprint)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        history, step = resumed["history"], resumed["step"]
        first_epoch, first_lo, sums = resumed["epoch"], resumed["batch_offset"], resumed["sums"]
        order = resumed["order"].numpy()
        rng.bit_generator.state = resumed["numpy_rng"]
        gen.set_state(resumed["torch_generator"])
        torch.set_rng_state(resumed["torch_rng"])
        tqdm.write(f"pretrain_encoder: resuming at step {step} of {total} from {checkpoint}")

    def save_state(epoch: int, next_lo: int) -> None:
        # only called inside an epoch (sums set) and with a checkpoint (``every`` is 0 without)
        assert checkpoint is not None and sums is not None
        save_training_state(
            checkpoint,
            {
                "fingerprint": fingerprint,
                "step": step,
                "epoch": epoch,
                "batch_offset": next_lo,
                "order": torch.from_numpy(np.asarray(order, dtype=np.int64)),
                "sums": dict(sums),
                "history": history,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "numpy_rng": _numpy_state(rng),
                "torch_generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
            },
        )

    every = cfg.checkpoint_every_steps if checkpoint is not None else 0
    bar = tqdm(total=total, initial=step, desc="pretrain encoder", unit="step", disable=None)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for epoch in range(first_epoch, cfg.epochs + 1):
        if first_lo == 0:  # a resumed epoch keeps the order it drew before the interruption
            order = rng.permutation(train_idx)
            sums = {"reconstruction": 0.0, "cross_entropy": 0.0, "accuracy": 0.0}
        assert order is not None and sums is not None  # a resumed epoch restored both
        for lo in range(first_lo, len(order), cfg.batch_size):
            index = order[lo : lo + cfg.batch_size]
            clips = sample_clips(videos, index, arch.frames, rng)
            if cfg.augment:
                clips = augment(clips, rng)
            still = make_static(clips, cfg.static_share, rng)
            keep, hidden = tube_mask(len(index), arch, cfg.mask_ratio, gen)
            recon, logits, attribute_logits = model.training_outputs(
                clips, keep, hidden, rgb_keep(len(index), rgb_dropout, gen)
            )
            # a still shows no action: its action label is ignored
            target = torch.from_numpy(np.where(still, -1, labels[index]))
            ce = F.cross_entropy(logits, target, ignore_index=-1) if (~still).any() else logits.sum() * 0.0
            loss = recon + cfg.supervised_weight * ce
            for head, values in zip(attribute_logits, appearance.values()):
                known = torch.from_numpy(values[index])
                if (known >= 0).any():
                    loss = loss + cfg.appearance_weight * F.cross_entropy(head, known, ignore_index=-1)
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, warmup, cfg.lr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            sums["reconstruction"] += recon.item() * len(index)
            sums["cross_entropy"] += ce.item() * len(index)
            sums["accuracy"] += float((logits.argmax(1) == target).sum()) * len(index) / max(1, int((~still).sum()))
            bar.update(1)
            bar.set_postfix(recon=f"{recon.item():.3f}", ce=f"{ce.item():.3f}")
            if every and step % every == 0 and step < total:
                save_state(epoch, lo + cfg.batch_size)
        first_lo = 0
        row = {"epoch": epoch, **{k: v / len(order) for k, v in sums.items()}}
        if len(val_idx):
            row.update(evaluate(model, [videos[i] for i in val_idx], labels[val_idx], cfg, arch.frames))
        history.append(row)
    bar.close()
    seconds = time.perf_counter() - t0
    # CPU time as well: wall time on a shared machine says little about the cost on a dedicated one
    info = {
        "train_videos": int(len(train_idx)),
        "val_videos": int(len(val_idx)),
        "steps": step,
        "train_seconds": round(seconds, 2),
        "train_cpu_seconds": round(time.process_time() - cpu0, 2),
        "encoder_parameters": count_parameters(model.encoder),
        "classes": arch.num_classes,
        "appearance_heads": list(appearance),
    }
    if resumed is not None:
        info["resumed_from_step"] = int(resumed["step"])
    return model.encoder.eval().requires_grad_(False), history, info
