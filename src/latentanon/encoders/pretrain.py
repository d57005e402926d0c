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
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from latentanon._files import write_json_atomic
from latentanon.data.config import DataConfig
from latentanon.encoders.builtin_files import CONFIG_FILE, is_builtin_dir, save_builtin
from latentanon.encoders.builtin_training import train_builtin
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
            from latentanon.encoders.builtin_files import load_builtin

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
