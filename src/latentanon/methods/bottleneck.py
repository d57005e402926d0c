"""``bottleneck``: a stochastic task bottleneck, the default label-free anonymizer.

A small MLP maps each clip feature to a k-dimensional code on the sphere of radius sqrt(k). It is
trained through the seen tasks' heads (AR, TAD, AD) on the code plus Gaussian noise of std sigma,
while a compaction loss pulls every clip of one action (every snippet of one TAD class) to one
point and every static clip, whatever its video, to another. No private label is used. What the
tasks do not need (appearance, identity) is squeezed into the within-class residual, and the
published code carries fresh noise drawn from the operating system, many times larger than that
residual: an attacker retrained on the codes reads noise. Published stores draw the noise from
OS entropy (``Method.noise_rng``), so nobody can subtract it; only evaluation keys it, so that
its figures reproduce (``Method.with_reproducible_noise``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from latentanon.errors import DataError, ModelError
from latentanon.methods.base import Method
from latentanon.methods.config import TrainConfig
from latentanon.tasks.annotations import tad_targets, tad_vocabulary
from latentanon.tasks.heads import ADHead, ARHead, TADHead

TASK_SETS = {"ar": "actions", "tad": "untrimmed", "ad": "anomaly"}
NOISE_SECRET_ENV = "LATENTANON_NOISE_SECRET"
NOISE_FORMS = ("fresh", "keyed_clip", "keyed_video")


def pad_sequences(items: list[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T_max, d) zero-padded tensor and (N, T_max) mask of real positions."""
    t_max = max(int(np.shape(a)[0]) for a in items)
    x = np.zeros((len(items), t_max, dim), dtype=np.float32)
    mask = np.zeros((len(items), t_max), dtype=bool)
    for i, a in enumerate(items):
        x[i, : len(a)] = a
        mask[i, : len(a)] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


def within_group_spread(z: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of each row of ``z`` (n, k) to the mean of its group (ids >= 0)."""
    n_groups = int(groups.max()) + 1
    sums = torch.zeros(n_groups, z.shape[1], dtype=z.dtype).index_add_(0, groups, z)
    counts = torch.bincount(groups, minlength=n_groups).clamp_min(1).unsqueeze(1).to(z.dtype)
    return (z - (sums / counts)[groups]).pow(2).sum(dim=1).mean()


class CodeNet(nn.Module):
    """Standardised feature -> code on the sphere of radius sqrt(k)."""

    def __init__(self, dim: int, code_dim: int, hidden: int):
        super().__init__()
        self.code_dim = code_dim
        # hidden 0: a linear map (generalises like a linear probe on few training videos)
        self.net = (
            nn.Sequential(
                nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, code_dim)
            )
            if hidden
            else nn.Linear(dim, code_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1) * self.code_dim**0.5


class BottleneckMethod(Method):
    """Label-free: fits on task labels and static clips only; its output width is ``code_dim``."""

    needs_private_labels = False
    stochastic = True

    def __init__(self, name: str, train: TrainConfig = TrainConfig()):
        super().__init__(name, train)
        self.config = train.bottleneck
        if self.config.noise not in NOISE_FORMS:
            raise ModelError(
                f"method {name}: train.bottleneck.noise must be one of {', '.join(NOISE_FORMS)}, "
                f"got {self.config.noise!r}"
            )
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.net: CodeNet | None = None
        self.heads = None  # its task heads serve training only; nothing to keep

    @property
    def output_dim(self) -> int | None:
        return None if self.dim is None else self.config.code_dim

    @property
    def releases_differ(self) -> bool:
        """Keyed noise is memoised: every release of a store is the same."""
        return self.config.noise == "fresh"

    @classmethod
    def suggest(cls, trial, name, train, tune):
        """Searches the noise std and the compaction weight (tune.bottleneck_sigma_range,
        tune.bottleneck_compaction_range)."""
        from latentanon.methods.base import search_range

        sigma = trial.suggest_float("bottleneck_sigma", *search_range(tune, "bottleneck_sigma_range"), log=True)
        compaction = trial.suggest_float(
            "bottleneck_compaction", *search_range(tune, "bottleneck_compaction_range"), log=True
        )
        return name, replace(
            train,
            bottleneck=replace(train.bottleneck, sigma=sigma, compaction=compaction, static_compaction=compaction),
        )

    # ------------------------------------------------------------------ fitting

    def seen_tasks(self) -> tuple[str, ...]:
        weights = self.train.tasks
        return tuple(t for t in TASK_SETS if getattr(weights, t) > 0)

    def _fit(self, sets, seed, checkpoint_dir) -> None:
        assert self.dim is not None  # fit() sets it before _fit
        started = time.perf_counter()
        cfg = self.config
        tasks = [t for t in self.seen_tasks() if TASK_SETS[t] in sets]
        if not tasks:
            raise DataError(
                f"bottleneck method: no seen task's feature set among {sorted(sets)} "
                f"(needs {', '.join(TASK_SETS[t] for t in self.seen_tasks())})"
            )
        train = {t: sets[TASK_SETS[t]].split("train") for t in tasks}
        rows = [
            np.asarray(a, np.float64).reshape(-1, self.dim)
            for fs in train.values()
            for items in fs.arrays.values()
            for a in items
            if len(a)
        ]
        stacked = np.concatenate(rows)
        self.mean = stacked.mean(axis=0).astype(np.float32)
        self.std = (stacked.std(axis=0) + 1e-6).astype(np.float32)
        vocabulary = tad_vocabulary(train["tad"]) if "tad" in train else []
        if "tad" in train and not vocabulary:
            raise DataError(
                f"bottleneck method: feature set {train['tad'].name!r} has no action segments in its train split"
            )
        n_actions = int(train["ar"].records["label_id"].max()) + 1 if "ar" in train else 0
        fit_batches = self._batches(train, vocabulary)
        val = {t: sets[TASK_SETS[t]].split("val") for t in tasks}
        val_batches = self._batches(val, vocabulary) if all(len(fs) for fs in val.values()) else None

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = CodeNet(self.dim, cfg.code_dim, cfg.hidden)
            heads = {
                "ar": ARHead(cfg.code_dim, max(n_actions, 1)),
                "tad": TADHead(cfg.code_dim, max(len(vocabulary), 1)),
                "ad": ADHead(cfg.code_dim),
            }
            heads = {t: heads[t] for t in tasks}
            generator = torch.Generator().manual_seed(seed)
            params = list(self.net.parameters()) + [p for h in heads.values() for p in h.parameters()]
            optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
            history: list[dict[str, float]] = []
            best: tuple[float, int, dict[str, torch.Tensor] | None] = (float("inf"), -1, None)
            for step in tqdm(range(cfg.steps), desc="bottleneck", unit="step", disable=None, leave=False):
                loss, parts = self._loss(fit_batches, heads, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if step % cfg.eval_every == 0 or step == cfg.steps - 1:
                    record = {"step": step, **parts}
                    if val_batches is not None:
                        # Selection on the val split: the same loss, on the same noise draw each time.
                        with torch.no_grad():
                            val_loss, val_parts = self._loss(val_batches, heads, torch.Generator().manual_seed(seed))
                        record.update({f"val_{k}": v for k, v in val_parts.items()})
                        if float(val_loss) < best[0]:
                            best = (float(val_loss), step, copy.deepcopy(self.net.state_dict()))
                    history.append(record)
            if best[2] is not None:
                self.net.load_state_dict(best[2])
        self.net.eval()
        final = next(h for h in history if h["step"] == best[1]) if best[2] is not None else history[-1]
        self.info.update(
            {
                "seen_tasks": list(tasks),
                "steps": history,
                "best_step": best[1],
                "final_spread_per_dim": final["spread"],
                "noise_var_per_dim": cfg.sigma**2,
            }
        )
        # the train stage's loss curves (history.json, loss_curves.png/.csv): steps stand for epochs
        self.history = {
            "epoch": [h["step"] for h in history],
            "train_total": [h["total"] for h in history],
            "train_utility": [sum(h.get(t, 0.0) for t in tasks) for h in history],
            "best_epoch": best[1] if best[2] is not None else None,
            "best_score": best[0] if best[2] is not None else None,
            "seconds": time.perf_counter() - started,
        }
        if val_batches is not None:
            self.history["val_total"] = [h["val_total"] for h in history]
            self.history["val_utility"] = [sum(h.get(f"val_{t}", 0.0) for t in tasks) for h in history]

    def _batches(self, split_sets: dict, vocabulary: list[str]) -> dict:
        """Padded, standardised tensors of one split: per task (x, mask, target, groups), and the
        action clips' static clips under "static"."""
        mean, std = torch.from_numpy(self.mean), torch.from_numpy(self.std)

        def standardised(items):
            x, mask = pad_sequences(items, self.dim)
            return (x - mean) / std, mask

        batches: dict[str, tuple[torch.Tensor | None, ...]] = {}
        if "ar" in split_sets:
            fs = split_sets["ar"]
            x, mask = standardised(fs.kind("clips"))
            labels = torch.tensor(fs.records["label_id"].to_numpy(dtype=np.int64))
            batches["ar"] = (x, mask, labels, labels[:, None].expand(mask.shape))
            if "static" in fs.arrays:
                batches["static"] = standardised(fs.kind("static"))
        if "tad" in split_sets:
            fs = split_sets["tad"]
            x, mask = standardised(fs.kind("snippets"))
            targets = torch.zeros(mask.shape, dtype=torch.long)
            for i, t in enumerate(tad_targets(fs, vocabulary)):
                targets[i, : len(t)] = torch.from_numpy(t)
            batches["tad"] = (x, mask, targets, targets)
        if "ad" in split_sets:
            fs = split_sets["ad"]
            x, mask = standardised(fs.kind("snippets"))
            batches["ad"] = (x, mask, torch.tensor(fs.records["anomaly"].to_numpy(dtype=np.int64)), None)
        return batches

    def _loss(self, batches: dict, heads: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Seen tasks' losses on the noisy code, plus the compaction of moving clips / snippets
        within their class and of every static clip around one point (relative to the noise)."""
        cfg = self.config
        assert self.net is not None  # _fit builds the net before it computes a loss
        scale = cfg.sigma**2 * cfg.code_dim
        losses, spread, static_spread = {}, torch.zeros(()), torch.zeros(())
        for t, head in heads.items():
            x, mask, target, groups = batches[t]
            z = self.net(x)
            noisy = z + cfg.sigma * torch.randn(z.shape, generator=generator)
            losses[t] = getattr(self.train.tasks, t) * head.loss(noisy, mask, target)
            if groups is not None:
                spread = spread + within_group_spread(z[mask], groups[mask])
        if "static" in batches:
            x, mask = batches["static"]
            z = self.net(x)[mask]
            static_spread = within_group_spread(z, torch.zeros(z.shape[0], dtype=torch.long))
        loss = sum(losses.values()) + (cfg.compaction * spread + cfg.static_compaction * static_spread) / scale
        parts = {
            "spread": float(spread.detach()) / cfg.code_dim,
            "static_spread": float(static_spread.detach()) / cfg.code_dim,
            **{t: float(v.detach()) for t, v in losses.items()},
            "total": float(loss.detach()),
        }
        return loss, parts

    # ------------------------------------------------------------------ applying

    def _keyed_rng(self, video: str, kind: str) -> np.random.Generator:
        """The memoised draw of (secret, video, kind): the secret comes from the environment and
        is never stored with the method or a release. Evaluation's keyed noise stands in for it."""
        import hashlib
        import os

        if self.reproducible_noise:
            return self.noise_rng(video, kind)
        secret = os.environ.get(NOISE_SECRET_ENV, "")
        if not secret:
            raise ModelError(
                f"method {self.name}: train.bottleneck.noise {self.config.noise!r} needs a secret in "
                f"{NOISE_SECRET_ENV} to publish (the same secret gives the same release)"
            )
        digest = hashlib.sha256(f"{secret}\0{video}\0{kind}".encode()).digest()
        return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))

    @torch.no_grad()
    def _transform_kind(self, kind, items, ids):
        sigma = self.config.sigma
        mean, std = torch.from_numpy(self.mean), torch.from_numpy(self.std)
        out = []
        for a, video in zip(items, ids):
            code = self.net((torch.from_numpy(np.asarray(a, np.float32)) - mean) / std).numpy()
            if self.config.noise == "fresh":
                noise = self.noise_rng(video, kind).standard_normal(code.shape)
            elif self.config.noise == "keyed_clip":
                noise = self._keyed_rng(video, kind).standard_normal(code.shape)
            else:  # keyed_video: one draw for every clip of the video
                noise = np.broadcast_to(self._keyed_rng(video, kind).standard_normal((1, code.shape[1])), code.shape)
            out.append(code + sigma * noise.astype(np.float32))
        return out

    # ------------------------------------------------------------------ state

    def state(self):
        state = {f"net.{k}": v.detach().numpy() for k, v in self.net.state_dict().items()}
        return {**state, "mean": self.mean, "std": self.std}

    def set_state(self, state) -> None:
        assert self.dim is not None  # restore() sets it before set_state
        cfg = self.config
        self.mean = np.asarray(state["mean"], np.float32)
        self.std = np.asarray(state["std"], np.float32)
        self.net = CodeNet(self.dim, cfg.code_dim, cfg.hidden)
        self.net.load_state_dict(
            {k[4:]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith("net.")}
        )
        self.net.eval()
