"""Training the adapter: one joint step per batch of train videos, selection on val, resumable.

Each batch mixes videos of every training set (actions, untrimmed, anomaly):
- L_B: two different static clips of each video (length-1 sequences through the AAM), NT-Xent
  across the batch, maximised;
- L_LC: MSE between the AAM's output and its input on the moving clips / snippet sequences;
- L_T: the seen tasks' heads (AR on actions clips, TAD on untrimmed snippets, AD on anomaly
  snippets) on the AAM's outputs, each times its task weight (weight 0: unseen, no head).

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
from dataclasses import asdict, dataclass
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
from latentanon.methods.config import LossWeights, TrainConfig
from latentanon.methods.losses import latent_consistency, nt_xent, total_loss
from latentanon.tasks.heads import ADHead, ARHead, TADHead
from latentanon.tasks.scoring import TRAINING_SETS, tad_targets, tad_vocabulary

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


# ----------------------------------------------------------------------------- tensors


@dataclass
class _SplitTensors:
    """One set's split as padded tensors: moving sequences, static clips, task targets."""

    moving: torch.Tensor  # (N, T, d)
    moving_mask: torch.Tensor  # (N, T) bool
    static: torch.Tensor  # (N, S, d)
    static_count: np.ndarray  # (N,) real static clips per video
    targets: torch.Tensor | None  # ar: (N,), tad: (N, T), ad: (N,)

    def __len__(self) -> int:
        return self.moving.shape[0]


def _padded(items: list[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    t_max = max((a.shape[0] for a in items), default=1) or 1
    x = np.zeros((len(items), t_max, dim), dtype=np.float32)
    mask = np.zeros((len(items), t_max), dtype=bool)
    for i, a in enumerate(items):
        x[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


def _split_tensors(fs: FeatureSet, kind: str, task: str, vocabulary: list[str], dim: int, device) -> _SplitTensors:
    moving, moving_mask = _padded(fs.kind(kind), dim)
    static_items = fs.arrays.get("static", [np.zeros((0, dim), np.float32)] * len(fs))
    static, static_mask = _padded(static_items, dim)
    targets = None
    if task == "ar":
        targets = torch.tensor(fs.records["label_id"].to_numpy(dtype=np.int64))
    elif task == "tad" and vocabulary:
        targets = torch.zeros(moving_mask.shape, dtype=torch.long)
        for i, t in enumerate(tad_targets(fs, vocabulary)):
            targets[i, : len(t)] = torch.from_numpy(t)
    elif task == "ad":
        targets = torch.tensor(fs.records["anomaly"].to_numpy(dtype=np.int64))
    return _SplitTensors(
        moving.to(device),
        moving_mask.to(device),
        static.to(device),
        static_mask.sum(dim=1).numpy(),
        None if targets is None else targets.to(device),
    )


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


class _ReverseGradient(torch.autograd.Function):
    """Identity forward, negated gradient backward: the critic minimises what the adapter maximises."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def build_critic(dim: int, hidden: int) -> torch.nn.Module:
    """The L_B projection head; its LayerNorm makes the match blind to the outputs' scale."""
    return torch.nn.Sequential(
        torch.nn.LayerNorm(dim), torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden)
    )


def _two_positions(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two different random positions below each count (every count >= 2)."""
    first = np.floor(rng.random(len(counts)) * counts).astype(np.int64)
    offset = 1 + np.floor(rng.random(len(counts)) * (counts - 1)).astype(np.int64)
    return first, (first + offset) % counts


def _privacy_loss(pairs: list[tuple[torch.Tensor, torch.Tensor]], critic, temperature: float) -> torch.Tensor | None:
    """L_B averaged over the kinds of pairs; through the critic (gradient reversed) when there is one."""
    losses = []
    for a, b in pairs:
        if a.shape[0] < 2:
            continue
        if critic is not None:
            a, b = critic(_ReverseGradient.apply(a)), critic(_ReverseGradient.apply(b))
        losses.append(nt_xent(a, b, temperature))
    return torch.stack(losses).mean() if losses else None


def _run(model: AAM, x: torch.Tensor, mask: torch.Tensor, across_batch: bool) -> torch.Tensor:
    """The AAM on padded sequences: per video, or (the released paper form) with every real clip
    of the batch in one attention sequence."""
    if not across_batch:
        return model(x, mask)
    out = torch.zeros_like(x)
    out[mask] = model(x[mask][None])[0]
    return out


def _run_static(model: AAM, clips: torch.Tensor, across_batch: bool) -> torch.Tensor:
    """(N, d) static clips: each alone, or all in one sequence (released paper form)."""
    return model(clips[None])[0] if across_batch else model(clips[:, None])[:, 0]


def _batch_losses(
    model: AAM,
    heads: torch.nn.ModuleDict,
    data: dict[str, _SplitTensors],
    rows: dict[str, np.ndarray],
    train_cfg: TrainConfig,
    weights: LossWeights,
    rng: np.random.Generator,
    critic: torch.nn.Module | None = None,
    across_batch: bool = False,
) -> dict[str, torch.Tensor]:
    outputs, inputs = [], []
    utility = torch.zeros((), device=next(model.parameters()).device)
    parts: dict[str, torch.Tensor] = {}
    firsts, seconds = [], []
    moving_firsts, moving_seconds = [], []
    use_moving = train_cfg.privacy.views == "static+moving"
    for name, split in data.items():
        idx = rows[name]
        if not len(idx):
            continue
        index = torch.as_tensor(idx, device=split.moving.device)
        x, mask = split.moving[index], split.moving_mask[index]
        out = _run(model, x, mask, across_batch)
        outputs.append(out[mask])
        inputs.append(x[mask])
        task = TRAINING_SETS[name][1]
        if task in heads and split.targets is not None:
            head = heads[task]
            assert isinstance(head, (ARHead, TADHead, ADHead))  # what _build_heads puts there
            loss = head.loss(out, mask, split.targets[index])
            parts[task] = loss.detach()
            utility = utility + getattr(train_cfg.tasks, task) * loss
        # two different static clips of each video that has at least two
        counts = split.static_count[idx]
        usable = np.flatnonzero(counts >= 2)
        if len(usable):
            first, second = _two_positions(counts[usable], rng)
            vids = torch.as_tensor(idx[usable], device=split.static.device)
            firsts.append(split.static[vids, torch.as_tensor(first, device=vids.device)])
            seconds.append(split.static[vids, torch.as_tensor(second, device=vids.device)])
        if use_moving:
            # two different moving clips / snippets of each video, as the adapter outputs them
            lengths = mask.sum(dim=1).cpu().numpy()
            usable = np.flatnonzero(lengths >= 2)
            if len(usable):
                first, second = _two_positions(lengths[usable], rng)
                rows_t = torch.as_tensor(usable, device=out.device)
                moving_firsts.append(out[rows_t, torch.as_tensor(first, device=out.device)])
                moving_seconds.append(out[rows_t, torch.as_tensor(second, device=out.device)])
    # pooled over every real clip / snippet of every set in the batch
    latent = latent_consistency(torch.cat(outputs), torch.cat(inputs)) if outputs else utility * 0.0
    pairs = []
    if firsts:
        a, b = torch.cat(firsts), torch.cat(seconds)
        pairs.append((_run_static(model, a, across_batch), _run_static(model, b, across_batch)))
    if moving_firsts:
        pairs.append((torch.cat(moving_firsts), torch.cat(moving_seconds)))
    privacy = _privacy_loss(pairs, critic, weights.temperature)
    if privacy is None:
        privacy = utility * 0.0
    total = total_loss(weights, latent, utility, privacy)
    # With a critic the gradient reversal already turns L_B's sign for the adapter, so the step
    # minimises + w_B * L_B (the critic matches, the adapter un-matches); "total" stays the
    # adapter's objective as reported everywhere else.
    step = total if critic is None else total + 2.0 * weights.privacy * privacy
    return {"total": total, "step": step, "latent": latent, "utility": utility, "privacy": privacy, **parts}


def _batches(data: dict[str, _SplitTensors], batch_size: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Shuffle each set and deal it into the same number of batches, so each batch mixes sets."""
    total = sum(len(s) for s in data.values())
    n_batches = max(1, math.ceil(total / batch_size))
    dealt = {name: np.array_split(rng.permutation(len(s)), n_batches) for name, s in data.items()}
    return [{name: dealt[name][k] for name in data} for k in range(n_batches)]


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
    train_data: dict[str, _SplitTensors] = {}
    val_data: dict[str, _SplitTensors] = {}
    for name, fs in sets.items():
        kind, task = TRAINING_SETS[name]
        vocab = vocabularies["tad"] if task == "tad" else []
        for split_name, bucket in (("train", train_data), ("val", val_data)):
            part = fs.split(split_name)
            if len(part):
                bucket[name] = _split_tensors(part, kind, task, vocab, dim, device)
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
        for rows in _batches(train_data, train_cfg.batch_size, rng):
            losses = _batch_losses(model, heads, train_data, rows, train_cfg, weights, rng, critic, across_batch)
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
                val = _batch_losses(
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
