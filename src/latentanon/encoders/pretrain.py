"""The ``pretrain_encoder`` stage: masked-reconstruction + supervised pretraining of the built-in encoder.

Reads the ``pretrain`` manifest (plus the train split of ``extra_train_sets``), trains on random
16-frame clips (masked reconstruction; an action head on all tokens, seeing frame differences and,
for part of the clips, the frames themselves), saves the frozen encoder
(model.safetensors + config.json with its identity) and then probes it: a linear action probe
on ``actions`` (useful?) and attribute attackers on static clips of ``privacy_videos`` (leaky?),
written to report_dir/probe.json. With ``encoder: hf:<dir>`` nothing is trained: the stage
records the Hugging Face encoder in the encoder directory and probes it the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from latentanon._files import atomic_path, load_matching_checkpoint, write_json_atomic
from latentanon.data.config import DataConfig
from latentanon.encoders.builtin import (
    CONFIG_FILE,
    BuiltinConfig,
    MaskedVideoPretrainer,
    count_parameters,
    is_builtin_dir,
    save_builtin,
    tube_mask,
)
from latentanon.encoders.config import PretrainConfig
from latentanon.errors import DataError, ModelError
from latentanon.figures import pyplot, save_figure

# settings that do not change the trained weights
NOT_TRAINING = frozenset(
    {"device", "probe", "probe_clips_per_video", "probe_static_per_video", "checkpoint_every_steps"}
)
CHECKPOINT_DIR = "checkpoints"  # under the encoder directory; removed once the encoder is saved
CHECKPOINT_FILE = "pretrain_state.pt"


def params_fingerprint(cfg: PretrainConfig, data_cfg: DataConfig, manifest: pd.DataFrame) -> str:
    """Identifies one training run's inputs, so a re-run with the same inputs is skipped."""
    training = {k: v for k, v in asdict(cfg).items() if k not in NOT_TRAINING}
    blob = json.dumps(
        {
            "pretrain": training,
            "clip_frames": data_cfg.clip_frames,
            "size": [data_cfg.height, data_cfg.width],
            "videos": sorted(manifest["checksum"].astype(str)),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def training_manifest(pretrain: pd.DataFrame, manifests_dir: Path, extra_sets: tuple[str, ...]) -> pd.DataFrame:
    """The pretrain manifest plus the ``train`` rows of ``extra_sets``, with one label id per class name.

    Pretraining classes keep their order; classes only an extra set has are appended. Only train
    rows are taken, so nothing the probe or later stages validate or test on is trained on.
    """
    from latentanon.data.manifests import read_manifest

    frames = [pretrain]
    for name in extra_sets:
        if name == "pretrain":
            continue
        extra = read_manifest(manifests_dir, name)
        missing = {"label", "split", "path", "checksum"} - set(extra.columns)
        if missing:
            raise DataError(f"{manifests_dir / (name + '.csv')}: no {', '.join(sorted(missing))} column to pretrain on")
        frames.append(extra[extra["split"] == "train"])
    combined = pd.concat(frames, ignore_index=True)
    order = list(dict.fromkeys(pretrain.sort_values("label_id")["label"].astype(str)))
    order += [c for c in dict.fromkeys(combined["label"].astype(str)) if c not in order]
    combined["label_id"] = combined["label"].astype(str).map({c: i for i, c in enumerate(order)}).astype(np.int64)
    return combined


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


def plot_curves(history: list[dict], path: Path) -> None:
    plt = pyplot()

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].plot(epochs, [h["reconstruction"] for h in history], marker="o", label="train reconstruction")
    axes[0].plot(epochs, [h["cross_entropy"] for h in history], marker="o", label="train action CE")
    if history and "val_reconstruction" in history[0]:
        axes[0].plot(epochs, [h["val_reconstruction"] for h in history], ls="--", label="val reconstruction")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=8)
    if history and "val_accuracy" in history[0]:
        axes[1].plot(epochs, [h["val_accuracy"] for h in history], marker="o", color="C2")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("val action accuracy (pretrain classes)")
    axes[1].set_ylim(0, 1)
    fig.suptitle("built-in encoder pretraining")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


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


def run_probe(
    cfg: PretrainConfig, data_cfg: DataConfig, manifests_dir: Path, data_root: Path, encoder_dir: Path
) -> dict:
    """Action probe on ``actions`` (train -> test) and static-clip attackers on ``privacy_videos``."""
    from latentanon.data.manifests import read_manifest
    from latentanon.encoders.loading import load_encoder
    from latentanon.encoders.probe import action_probe, attribute_attack, encode_videos

    encoder = load_encoder(encoder_dir, device=cfg.device)
    t0 = time.perf_counter()
    actions = read_manifest(manifests_dir, "actions")
    privacy = read_manifest(manifests_dir, "privacy_videos")
    feats = {}
    for name, frame, kind, per_video in (
        ("actions", actions, "clips", cfg.probe_clips_per_video),
        ("privacy_videos", privacy, "static", cfg.probe_static_per_video),
    ):
        for split in ("train", "test"):
            rows = frame[frame["split"] == split].reset_index(drop=True)
            if rows.empty:
                raise DataError(f"{manifests_dir / (name + '.csv')}: no {split!r} rows to probe on")
            feats[name, split] = (
                rows,
                encode_videos(
                    encoder, rows, data_root, kind, data_cfg.clip_frames, per_video, desc=f"probe {name} {split}"
                ),
            )
    (tr, ftr), (te, fte) = feats["actions", "train"], feats["actions", "test"]
    action = action_probe(ftr, tr["label_id"].to_numpy(), fte, te["label_id"].to_numpy(), cfg.seed)
    (tr, ftr), (te, fte) = feats["privacy_videos", "train"], feats["privacy_videos", "test"]
    attributes = attribute_attack(ftr, tr, fte, te, cfg.seed)
    return {
        "encoder": encoder.identity,
        "action_probe": action,
        "attribute_attack_static": attributes,
        "clips_per_video": cfg.probe_clips_per_video,
        "static_per_video": cfg.probe_static_per_video,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _record_hf(cfg: PretrainConfig, out_dir: Path) -> dict:
    """Point the encoder directory at a Hugging Face model (checked by loading it)."""
    from latentanon.encoders.hf import HFVideoEncoder

    source = Path(cfg.encoder[3:]).resolve()
    encoder = HFVideoEncoder(source, device="cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / CONFIG_FILE, {"kind": "hf_ref", "source": str(source), "identity": encoder.identity})
    return {"encoder": encoder.identity, "trained": False, "source": str(source)}


def pretrain_encoder(
    cfg: PretrainConfig,
    data_cfg: DataConfig,
    manifests_dir: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    report_dir: str | Path,
) -> dict:
    """The pretrain_encoder stage. Returns a summary (identity, timings, probe accuracies)."""
    from latentanon.data.manifests import read_manifest

    manifests_dir, data_root, out_dir, report_dir = map(Path, (manifests_dir, data_root, out_dir, report_dir))
    t0 = time.perf_counter()
    if cfg.encoder.startswith("hf:"):
        summary = _record_hf(cfg, out_dir)
    elif cfg.encoder == "builtin":
        manifest = training_manifest(read_manifest(manifests_dir, "pretrain"), manifests_dir, cfg.extra_train_sets)
        summary = _pretrain_builtin(cfg, data_cfg, manifest, data_root, out_dir, report_dir)
    else:
        raise ModelError(f"pretrain_encoder.encoder: unknown encoder {cfg.encoder!r} (use 'builtin' or 'hf:<dir>')")
    if cfg.probe:
        probe = run_probe(cfg, data_cfg, manifests_dir, data_root, out_dir)
        write_json_atomic(report_dir / "probe.json", probe)
        summary["probe"] = {
            "action_top1": probe["action_probe"]["top1"],
            "action_top1_interval": probe["action_probe"]["top1_interval"],
            "action_chance": probe["action_probe"]["chance_top1"],
            **{f"{a}_cmap": r["cmap"] for a, r in probe["attribute_attack_static"].items()},
            **{f"{a}_chance_cmap": r["chance_cmap"] for a, r in probe["attribute_attack_static"].items()},
        }
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def _pretrain_builtin(
    cfg: PretrainConfig, data_cfg: DataConfig, manifest: pd.DataFrame, data_root: Path, out_dir: Path, report_dir: Path
) -> dict:
    if manifest.empty:
        raise DataError("pretrain manifest has no rows")
    fingerprint = params_fingerprint(cfg, data_cfg, manifest)
    done = out_dir / CONFIG_FILE
    if is_builtin_dir(out_dir) and json.loads(done.read_text()).get("fingerprint") == fingerprint:
        try:
            from latentanon.encoders.builtin import load_builtin

            _, meta = load_builtin(out_dir)
            return {"encoder": meta["identity"], "trained": False, "reused": True, "fingerprint": fingerprint}
        except ModelError:
            pass  # damaged files: train again
    checkpoints = out_dir / CHECKPOINT_DIR
    encoder, history, info = train_builtin(
        cfg, data_cfg, manifest, data_root, checkpoint=checkpoints / CHECKPOINT_FILE, fingerprint=fingerprint
    )
    timing = {k: info[k] for k in ("train_seconds", "train_cpu_seconds", "resumed_from_step") if k in info}
    identity = save_builtin(
        encoder,
        out_dir,
        extra={
            "fingerprint": fingerprint,
            "pretrain": asdict(cfg),
            "history": history,
            **{k: v for k, v in info.items() if k not in timing},
        },
    )
    shutil.rmtree(checkpoints, ignore_errors=True)  # the saved encoder supersedes them; keep them out of the output
    write_json_atomic(report_dir / "history.json", {"history": history, **info})
    plot_curves(history, report_dir / "loss_curve.png")
    last = history[-1]
    return {
        "encoder": identity,
        "trained": True,
        "fingerprint": fingerprint,
        **info,
        "final_reconstruction": round(last["reconstruction"], 4),
        "final_cross_entropy": round(last["cross_entropy"], 4),
        **({"val_accuracy": round(last["val_accuracy"], 4)} if "val_accuracy" in last else {}),
    }
