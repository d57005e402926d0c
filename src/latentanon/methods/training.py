"""Training the adapter: one joint step per batch of train videos, selection on val, resumable.

What a batch holds and its loss: latentanon.methods.adapter_batches.

Checkpoint selection (val split only): the epoch with the lowest val w_LC * L_LC - w_B * L_B
(fixed draw of static pairs). The co-trained heads' val loss is recorded but left out of the
criterion: those heads overfit small train splits regardless of the adapter, and the utility that
matters is measured later by freshly trained heads, for which L_LC (closeness to the raw moving
features) is the proxy. The train split alone feeds gradients.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from latentanon._files import load_matching_checkpoint, write_json_atomic
from latentanon.encoders.base import resolve_device as resolve_encoder_device
from latentanon.errors import DataError, StoreError
from latentanon.features.featureset import FeatureSet
from latentanon.figures import pyplot, save_figure
from latentanon.methods.aam import AAM
from latentanon.methods.adapter_batches import SplitTensors, batch_losses, batches, build_critic, split_tensors
from latentanon.methods.config import LossWeights, TrainConfig
from latentanon.tasks.annotations import tad_vocabulary
from latentanon.tasks.heads import ADHead, ARHead, TADHead
from latentanon.tasks.specs import TRAINING_SETS

CHECKPOINT_NAME = "last.pt"
VAL_PAIR_SEED = 12345


def load_training_sets(features_uri: str) -> dict[str, FeatureSet]:
    """The stored feature sets the adapter trains on (those of TRAINING_SETS that exist)."""
    from latentanon.features.store import list_feature_sets, load_feature_set

    available = set(list_feature_sets(features_uri))
    sets = {name: load_feature_set(features_uri, name) for name in TRAINING_SETS if name in available}
    if not sets:
        raise StoreError(
            f"{features_uri}: none of the training feature sets {sorted(TRAINING_SETS)} is in the store "
            f"(found {sorted(available)})"
        )
    return sets


def resolve_device(name: str) -> torch.device:
    """train.device: as every stage, an explicit ``cuda`` without a GPU is an error, not the CPU."""
    return resolve_encoder_device(name, setting="train.device")


# ----------------------------------------------------------------------------- sets


def _check_sets(sets: dict[str, FeatureSet]) -> int:
    if not sets:
        raise DataError("adapter training: no feature sets given")
    dims = set()
    for name, fs in sets.items():
        if name not in TRAINING_SETS:
            raise DataError(f"adapter training: unknown set {name!r}; expected some of {sorted(TRAINING_SETS)}")
        kind, task = TRAINING_SETS[name]
        if kind not in fs.arrays:
            raise DataError(f"feature set {name!r}: no {kind!r} features to train the adapter on")
        if "split" not in fs.records.columns:
            raise DataError(f"feature set {name!r}: records lack the 'split' column")
        need = {"ar": ["label_id"], "tad": ["segments", "fps"], "ad": ["anomaly"]}[task]
        missing = [c for c in need if c not in fs.records.columns]
        if missing:
            raise DataError(f"feature set {name!r}: records lack {missing} needed by task {task}")
        dims.add(fs.dim)
    if len(dims) != 1:
        raise DataError(f"adapter training: feature sets have different widths {sorted(dims)}")
    if not any((fs.records["split"] == "train").any() for fs in sets.values()):
        raise DataError("adapter training: no video is in the train split")
    return dims.pop()


# ----------------------------------------------------------------------------- model


def _build_heads(sets: dict[str, FeatureSet], train_cfg: TrainConfig, dim: int) -> tuple[torch.nn.ModuleDict, dict]:
    """Heads of the seen tasks (task weight > 0) and the label vocabularies they use."""
    heads = torch.nn.ModuleDict()
    info: dict[str, dict[str, int | list[str]]] = {}
    for name, fs in sets.items():
        task = TRAINING_SETS[name][1]
        if getattr(train_cfg.tasks, task) <= 0:
            continue
        if task == "ar":
            n_classes = int(fs.records["label_id"].max()) + 1
            heads[task] = ARHead(dim, n_classes)
            info[task] = {"n_classes": n_classes}
        elif task == "tad":
            vocabulary = tad_vocabulary(fs.split("train"))
            if not vocabulary:
                continue
            heads[task] = TADHead(dim, len(vocabulary))
            info[task] = {"vocabulary": vocabulary}
        else:
            heads[task] = ADHead(dim)
            info[task] = {}
    return heads, info


def _signature(train_cfg: TrainConfig, weights: LossWeights, seed: int, dim: int, sets: dict[str, FeatureSet]) -> str:
    """What a checkpoint must match to be resumed (everything but the epoch count)."""
    blob = {
        "train": {
            k: v for k, v in asdict(train_cfg).items() if k not in ("epochs", "patience", "use_tuned_weights", "device")
        },
        "weights": asdict(weights),
        "seed": seed,
        "dim": dim,
        "sets": {n: [len(fs), sorted(fs.records["video_id"].astype(str))[:5]] for n, fs in sorted(sets.items())},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- checkpoints


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path, signature: str) -> dict | None:
    return load_matching_checkpoint(path, "signature", signature, "adapter")


def _state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class _BestEpoch(TypedDict):
    """The epoch kept so far: its number, selection score and weights."""

    epoch: int
    score: float
    model: dict[str, torch.Tensor]
    heads: dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- fitting


def fit_adapter_with_heads(
    sets: dict[str, FeatureSet],
    train_cfg: TrainConfig,
    weights: LossWeights,
    epochs: int,
    seed: int,
    checkpoint_dir: Path | None = None,
    across_batch: bool = False,
) -> tuple[AAM, torch.nn.ModuleDict, dict]:
    """fit_adapter, also returning the co-trained heads (and their label info in history).

    ``across_batch``: the released paper form, attention across the clips of a mini-batch."""
    dim = _check_sets(sets)
    device = resolve_device(train_cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AAM(dim, train_cfg.adapter).to(device)
        heads, head_info = _build_heads(sets, train_cfg, dim)
        heads = heads.to(device)
        critic = build_critic(dim, train_cfg.privacy.critic_hidden).to(device) if train_cfg.privacy.critic else None
    vocabularies = {"tad": head_info.get("tad", {}).get("vocabulary", [])}
    train_data: dict[str, SplitTensors] = {}
    val_data: dict[str, SplitTensors] = {}
    for name, fs in sets.items():
        kind, task = TRAINING_SETS[name]
        vocab = vocabularies["tad"] if task == "tad" else []
        for split_name, bucket in (("train", train_data), ("val", val_data)):
            part = fs.split(split_name)
            if len(part):
                bucket[name] = split_tensors(part, kind, task, vocab, dim, device)
    params = list(model.parameters()) + list(heads.parameters()) + (list(critic.parameters()) if critic else [])
    optimizer = torch.optim.AdamW(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    signature = _signature(train_cfg, weights, seed, dim, sets) + ("-batch" if across_batch else "")
    history: dict = {"epoch": [], "selection": "lowest val w_LC*L_LC - w_B*L_B", "heads": head_info}
    best: _BestEpoch = {"epoch": 0, "score": math.inf, "model": _state_copy(model), "heads": _state_copy(heads)}
    start = 0
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if checkpoint is not None:
        state = _load_checkpoint(checkpoint, signature)
        if state is not None:
            model.load_state_dict(state["model"])
            heads.load_state_dict(state["heads"])
            if critic is not None:
                critic.load_state_dict(state["critic"])
            optimizer.load_state_dict(state["optimizer"])
            history, best, start = state["history"], state["best"], int(state["epoch"])
    started = time.perf_counter()
    progress = tqdm(range(start, epochs), desc="train adapter", unit="epoch", disable=None, initial=start, total=epochs)
    for epoch in progress:
        if train_cfg.patience and epoch - best["epoch"] >= train_cfg.patience:
            history["stopped_early_at_epoch"] = epoch
            break
        model.train()
        heads.train()
        rng = np.random.default_rng([seed, epoch])
        sums: dict[str, float] = {}
        n_batches = 0
        for rows in batches(train_data, train_cfg.batch_size, rng):
            losses = batch_losses(model, heads, train_data, rows, train_cfg, weights, rng, critic, across_batch)
            optimizer.zero_grad()
            losses.pop("step").backward()
            optimizer.step()
            for key, loss in losses.items():
                sums[key] = sums.get(key, 0.0) + float(loss.detach())
            n_batches += 1
        record = {f"train_{k}": v / n_batches for k, v in sums.items()}
        if not math.isfinite(record["train_total"]):
            # the weights are now non-finite: keep the best epoch so far rather than train on NaNs
            history["diverged_at_epoch"] = epoch + 1
            tqdm.write(
                f"adapter: the training loss became non-finite at epoch {epoch + 1}; keeping epoch "
                f"{best['epoch']} (lower train.lr for this configuration)"
            )
            break
        if val_data:
            model.eval()
            heads.eval()
            with torch.no_grad():
                rows = {name: np.arange(len(s)) for name, s in val_data.items()}
                val = batch_losses(
                    model,
                    heads,
                    val_data,
                    rows,
                    train_cfg,
                    weights,
                    np.random.default_rng(VAL_PAIR_SEED),
                    critic,
                    across_batch,
                )
                val.pop("step")
            record.update({f"val_{k}": float(v) for k, v in val.items()})
            split = "val"
        else:
            split = "train"
        score = weights.latent_consistency * record[f"{split}_latent"] - weights.privacy * record[f"{split}_privacy"]
        record[f"{split}_selection"] = score
        history["epoch"].append(epoch + 1)
        for key, value in record.items():
            history.setdefault(key, []).append(value)
        if score < best["score"]:
            best = {"epoch": epoch + 1, "score": score, "model": _state_copy(model), "heads": _state_copy(heads)}
        history["best_epoch"] = best["epoch"]
        history["best_score"] = best["score"]
        progress.set_postfix(total=f"{record['train_total']:.3f}", best=best["epoch"])
        if checkpoint is not None:
            _save_checkpoint(
                checkpoint,
                {
                    "signature": signature,
                    "epoch": epoch + 1,
                    "model": _state_copy(model),
                    "heads": _state_copy(heads),
                    "critic": _state_copy(critic) if critic is not None else {},
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                    "best": best,
                },
            )
    history["seconds"] = history.get("seconds", 0.0) + (time.perf_counter() - started)
    model.load_state_dict(best["model"])
    heads.load_state_dict(best["heads"])
    return model.cpu().eval(), heads.cpu().eval(), history


def fit_adapter(
    sets: dict[str, FeatureSet],
    train_cfg: TrainConfig,
    weights: LossWeights,
    epochs: int,
    seed: int,
    checkpoint_dir: Path | None = None,
) -> tuple[AAM, dict]:
    """Train an AAM on the train splits of ``sets``; return the val-selected model and the history."""
    model, _, history = fit_adapter_with_heads(sets, train_cfg, weights, epochs, seed, checkpoint_dir)
    return model, history


# ----------------------------------------------------------------------------- the stage


def plot_history(history: dict, path: Path) -> Path:
    plt = pyplot()

    epochs = history["epoch"]
    # only the losses this method has (the bottleneck has no L_LC / L_B)
    keys = [k for k in ("total", "latent", "privacy", "utility") if history.get(f"train_{k}")] or ["total"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    axes = axes[0]
    for ax, key in zip(axes, keys):
        for split, style in (("train", "-"), ("val", "--")):
            values = history.get(f"{split}_{key}")
            if values:
                ax.plot(epochs, values, style, label=split)
        if history.get("best_epoch"):
            ax.axvline(history["best_epoch"], color="grey", lw=0.8, ls=":", label="selected")
        ax.set_title({"total": "total", "latent": "L_LC", "privacy": "L_B (maximised)", "utility": "L_T"}[key])
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def save_heads(heads: torch.nn.ModuleDict, info: dict, directory: Path) -> Path:
    """The co-trained heads as heads.safetensors plus heads.json (their sizes and vocabularies)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "heads.safetensors.tmp"
    tensors = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    save_file(tensors or {"empty": torch.zeros(0)}, str(tmp))
    tmp.replace(directory / "heads.safetensors")
    write_json_atomic(directory / "heads.json", {"tasks": sorted(heads.keys()), "info": info})
    return directory / "heads.safetensors"
