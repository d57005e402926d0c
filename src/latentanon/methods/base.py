"""The one interface every anonymizer implements (DESIGN.md sections 1 and 6).

    method = create_method("noise@0.2", params.train)      # latentanon.methods.registry
    method.fit(sets, seed=0)           # train + val rows only; private labels only if declared
    anonymized = method.transform(fs)  # FeatureSet -> FeatureSet, every kind, records unchanged
    method.save(directory); load_method(directory); method.fingerprint()

A method keeps its learned state as named numpy arrays (``state`` / ``set_state``) and its knobs
as the ``train`` config it was built with; the base class turns those into ``method.json`` +
``method.safetensors``, a content fingerprint, and the MLflow pyfunc (tracking.pyfunc).
"""

from __future__ import annotations

import copy
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from latentanon._configtools import from_dict, to_dict
from latentanon.errors import ModelError
from latentanon.features.featureset import FeatureSet
from latentanon.methods.config import TrainConfig
from latentanon.tasks.private import ATTRIBUTES

METHOD_JSON = "method.json"
METHOD_STATE = "method.safetensors"
FORMAT_VERSION = 1
FIT_SPLITS = ("train", "val")  # a method never sees the test split
# Columns a label-free method never receives: the private attributes and the person identity.
PRIVATE_COLUMNS = (*ATTRIBUTES, "identity")


def fit_view(sets: Mapping[str, FeatureSet], private_labels: bool) -> dict[str, FeatureSet]:
    """The rows and columns a method may learn from: train and val rows; private columns dropped
    unless the method declares ``needs_private_labels``."""
    out = {}
    for name, fs in sets.items():
        if "split" not in fs.records.columns:
            raise ModelError(f"feature set {name!r}: records lack the 'split' column a method fits on")
        part = fs.subset(fs.records["split"].isin(FIT_SPLITS).to_numpy())
        if not private_labels:
            part.records = part.records.drop(columns=[c for c in PRIVATE_COLUMNS if c in part.records.columns])
        out[name] = part
    return out


def search_range(tune, key: str, optional: bool = False) -> tuple[float, ...]:
    """``tune.<key>`` checked as [low, high] with 0 < low <= high (empty allowed when optional)."""
    from latentanon._configtools import ConfigError

    bounds = tuple(getattr(tune, key))
    if optional and not bounds:
        return bounds
    if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
        raise ConfigError(f"tune.{key}: expected [low, high] with 0 < low <= high, got {list(bounds)}")
    return bounds


def video_ids(fs: FeatureSet) -> list[str]:
    if "video_id" in fs.records.columns:
        return [str(v) for v in fs.records["video_id"]]
    return [f"{fs.name}:{i}" for i in range(len(fs))]


class Method(ABC):
    """An anonymizer. Subclasses set ``needs_private_labels`` / ``batch_invariant`` and implement
    ``_fit``, ``_transform_kind``, ``state`` and ``set_state``."""

    needs_private_labels: ClassVar[bool] = False
    # A clip's output never depends on which other clips share its batch (every production
    # method); only the released paper form (paper_batch) is allowed to break it.
    batch_invariant: ClassVar[bool] = True
    # Whether the registry name carries an argument after "@" (noise@0.2); others reject one.
    takes_argument: ClassVar[bool] = False
    # A method whose transform draws fresh randomness (``noise_rng``): tests switch on
    # ``reproducible_noise`` to compare outputs; in use every call draws anew from the OS.
    stochastic: ClassVar[bool] = False

    def __init__(self, name: str, train: TrainConfig = TrainConfig()):
        self.name = name
        self.train = train
        self.dim: int | None = None
        self.info: dict = {}  # JSON-able facts about the fit (best epoch, seed, ...)
        self.reproducible_noise = False
        self.noise_key = 0

    @property
    def releases_differ(self) -> bool:
        """Whether two publications of one store differ (fresh randomness at publish time): what
        an attacker who averages re-releases can exploit. False for deterministic methods and for
        noise memoised under a secret key."""
        return self.stochastic

    def noise_rng(self, video_id: str, kind: str) -> np.random.Generator:
        """Randomness for one video's ``kind`` at transform time: fresh OS entropy (never derivable
        from a seed), or, with ``reproducible_noise`` (tests and evaluation only, see
        ``with_reproducible_noise``), keyed by (``noise_key``, video, kind) so that a video gets the
        same draw whichever videos share its batch."""
        if not self.reproducible_noise:
            return np.random.default_rng()
        import zlib

        return np.random.default_rng([self.noise_key, zlib.crc32(video_id.encode()), zlib.crc32(kind.encode())])

    def with_reproducible_noise(self, key: int) -> Method:
        """A copy of this method with its transform noise keyed by ``key``: what evaluation
        measures, so that figures reproduce run to run. The method it is called on keeps its own
        noise (the copy shares its learned state, which transform only reads). Never for a store
        that is shared: anyone who knows the key could subtract the noise. For methods without
        fresh randomness the copy transforms exactly as the original."""
        keyed = copy.copy(self)
        keyed.info = dict(self.info)
        keyed.reproducible_noise = self.stochastic
        keyed.noise_key = int(key)
        return keyed

    # ------------------------------------------------------------------ fitting and applying

    def fit(self, sets: Mapping[str, FeatureSet], seed: int = 0, checkpoint_dir: Path | None = None) -> Method:
        """Fit on the train (and, for selection, val) rows of ``sets`` (set name -> FeatureSet)."""
        view = fit_view(sets, self.needs_private_labels)
        dims = {fs.dim for fs in view.values() if len(fs)}
        if len(dims) != 1:
            raise ModelError(f"method {self.name}: feature sets have widths {sorted(dims)}; need exactly one")
        self.dim = dims.pop()
        self.info = {"seed": int(seed)}
        self._fit(view, seed, checkpoint_dir)
        return self

    @abstractmethod
    def _fit(self, sets: dict[str, FeatureSet], seed: int, checkpoint_dir: Path | None) -> None: ...

    @abstractmethod
    def _transform_kind(self, kind: str, items: list[np.ndarray], ids: list[str]) -> list[np.ndarray]:
        """Anonymize one kind of a feature set: ``items`` are (n_i, d) arrays, one per video."""

    def transform(self, fs: FeatureSet) -> FeatureSet:
        """Every kind of ``fs`` anonymized; records unchanged; meta names the method."""
        if self.dim is None:
            raise ModelError(f"method {self.name}: transform before fit or load")
        if len(fs) and fs.dim != self.dim:
            raise ModelError(f"method {self.name}: feature set {fs.name!r} has width {fs.dim}, fitted on {self.dim}")
        ids = video_ids(fs)
        arrays = {}
        for kind, items in fs.arrays.items():
            arrays[kind] = (
                []
                if not items
                else [np.asarray(a, dtype=np.float32) for a in self._transform_kind(kind, list(items), ids)]
            )
        return fs.with_arrays(arrays, anonymized=True, anonymizer=self.name, method_id=self.fingerprint())

    def transform_sequence(self, sequence: np.ndarray, kind: str = "clips", video_id: str = "sequence") -> np.ndarray:
        """One video's (T, d) sequence of ``kind`` (the MLflow pyfunc's contract); ``video_id``
        keys any per-video randomness."""
        sequence = np.asarray(sequence, dtype=np.float32)
        if sequence.ndim != 2 or sequence.shape[1] != self.dim:
            raise ModelError(f"method {self.name} expects one (T, {self.dim}) sequence, got shape {sequence.shape}")
        return np.asarray(self._transform_kind(kind, [sequence], [video_id])[0], dtype=np.float32)

    # ------------------------------------------------------------------ tuning

    @classmethod
    def suggest(cls, trial, name: str, train: TrainConfig, tune) -> tuple[str, TrainConfig]:
        """This method's knobs for one Optuna trial: returns the registry name and the train config
        the trial fits. ``tune`` is the tune section (its ``*_range`` knobs bound the search).
        Default: a method without searched knobs."""
        return name, train

    # ------------------------------------------------------------------ state and persistence

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Everything learned, as named arrays."""

    @abstractmethod
    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state`` returned (``self.dim`` and ``self.train`` are already set)."""

    @property
    def output_dim(self) -> int | None:
        """Width of the transformed features (the input width unless a method says otherwise)."""
        return self.dim

    def description(self) -> dict:
        return {
            "method": self.name,
            "format": FORMAT_VERSION,
            "dim": self.dim,
            "output_dim": self.output_dim,
            "needs_private_labels": self.needs_private_labels,
            "train": to_dict(self.train),
        }

    def fingerprint(self) -> str:
        """A short hash of the method's name, knobs, width and learned state."""
        digest = hashlib.sha256(json.dumps(self.description(), sort_keys=True, default=str).encode())
        for key, value in sorted(self.state().items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        return digest.hexdigest()[:16]

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        if self.dim is None:
            raise ModelError(f"method {self.name}: nothing to save before fit")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: np.ascontiguousarray(v) for k, v in self.state().items()}
        tmp = directory / (METHOD_STATE + ".tmp")
        save_file(state or {"empty": np.zeros(0, np.float32)}, str(tmp))
        tmp.replace(directory / METHOD_STATE)
        meta = {**self.description(), "fingerprint": self.fingerprint(), "info": self.info}
        tmp = directory / (METHOD_JSON + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(directory / METHOD_JSON)
        return directory

    @classmethod
    def restore(cls, name: str, meta: dict, state: dict[str, np.ndarray], where: str) -> Method:
        train = from_dict(TrainConfig, meta.get("train", {}), f"{where}:train")
        method = cls(name, train)
        method.dim = int(meta["dim"])
        method.info = dict(meta.get("info", {}))
        method.set_state({k: v for k, v in state.items() if k != "empty"})
        return method
