"""Applying a method to stored features: the anonymized store is what users share.

For AAM-shaped methods (paper, adversarial): moving clips and snippets go through the AAM as one
sequence per video (padding masked); every static clip is its own length-1 sequence, so no
appearance leaks between static clips. ``paper_batch`` (the released form) instead attends
across consecutive mini-batches of clips.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from latentanon.methods.aam import AAM, load_adapter
from latentanon.errors import ModelError
from latentanon.features.featureset import FeatureSet

SEQUENCE_BATCH = 256      # videos per forward pass for clips / snippets
STATIC_BATCH = 4096       # static clips per forward pass


def adapter_fingerprint(model: AAM) -> str:
    """A short hash of the adapter's weights and shape: its identity in anonymized stores."""
    digest = hashlib.sha256(f"{model.dim}:{model.config}".encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def _sequences(model: AAM, items: list[np.ndarray]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for start in range(0, len(items), SEQUENCE_BATCH):
        chunk = items[start : start + SEQUENCE_BATCH]
        t_max = max((a.shape[0] for a in chunk), default=0)
        if t_max == 0:
            out.extend(a.astype(np.float32, copy=True) for a in chunk)
            continue
        x = np.zeros((len(chunk), t_max, model.dim), dtype=np.float32)
        mask = np.zeros((len(chunk), t_max), dtype=bool)
        for i, a in enumerate(chunk):
            x[i, : a.shape[0]] = a
            mask[i, : a.shape[0]] = True
        y = model(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
        out.extend(y[i, : a.shape[0]].copy() for i, a in enumerate(chunk))
    return out


@torch.no_grad()
def _singletons(model: AAM, items: list[np.ndarray]) -> list[np.ndarray]:
    lengths = [a.shape[0] for a in items]
    if not sum(lengths):
        return [a.astype(np.float32, copy=True) for a in items]
    flat = np.concatenate([a for a in items if len(a)], axis=0).astype(np.float32)
    outputs = []
    for start in range(0, len(flat), STATIC_BATCH):
        x = torch.from_numpy(flat[start : start + STATIC_BATCH])[:, None, :]
        outputs.append(model(x)[:, 0].numpy())
    flat_out = np.concatenate(outputs, axis=0)
    return [part.copy() for part in np.split(flat_out, np.cumsum(lengths)[:-1])]


def apply_aam(model: AAM, kind: str, items: list[np.ndarray]) -> list[np.ndarray]:
    """One kind through a batch-invariant AAM: static clips alone, other kinds per video."""
    model = model.cpu().eval()
    return _singletons(model, items) if kind == "static" else _sequences(model, items)


@torch.no_grad()
def apply_aam_across_batch(model: AAM, items: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """The released paper form: the clips of all videos, in order, cut into mini-batches of
    ``batch_size``, each batch one attention sequence (a clip's output depends on its companions)."""
    model = model.cpu().eval()
    lengths = [a.shape[0] for a in items]
    if not sum(lengths):
        return [a.astype(np.float32, copy=True) for a in items]
    flat = np.concatenate([a for a in items if len(a)], axis=0).astype(np.float32)
    outputs = [model(torch.from_numpy(flat[start : start + batch_size])).numpy()
               for start in range(0, len(flat), batch_size)]
    flat_out = np.concatenate(outputs, axis=0)
    return [part.copy() for part in np.split(flat_out, np.cumsum(lengths)[:-1])]


def anonymize_feature_set(model: AAM, fs: FeatureSet) -> FeatureSet:
    """Every kind of ``fs`` through the adapter; records unchanged, meta notes the adapter."""
    if not len(fs):
        return fs.with_arrays({k: [] for k in fs.arrays}, anonymized=True, adapter_id=adapter_fingerprint(model))
    if fs.dim != model.dim:
        raise ModelError(f"feature set {fs.name!r} has width {fs.dim}, the adapter expects {model.dim}")
    model = model.cpu().eval()
    arrays = {}
    for kind, items in fs.arrays.items():
        arrays[kind] = _singletons(model, items) if kind == "static" else _sequences(model, items)
    return fs.with_arrays(arrays, anonymized=True, adapter_id=adapter_fingerprint(model))


def anonymize_store(method_dir, src_uri: str, dst_uri: str) -> dict:
    """Anonymize every set of the source store shard by shard into ``dst_uri`` with the method
    saved in ``method_dir`` (any registered method; legacy adapter directories are the paper AAM).

    Resumable: a destination shard already written by this same method is kept. The index meta
    records the method's name and identity and the source store.
    """
    from latentanon.features.store import FeatureStore, list_feature_sets
    from latentanon.methods.registry import load_method

    method_dir = Path(method_dir)
    method = load_method(method_dir)
    method_id = method.fingerprint()
    src, dst = FeatureStore(src_uri), FeatureStore(dst_uri)
    source_index = src.read_index()
    written, kept, per_set = 0, 0, {}
    set_names = list(list_feature_sets(src_uri))
    for set_name in tqdm(set_names, desc="anonymize", unit="set", disable=None):
        shard = 0
        while src.has_shard(set_name, shard):
            if dst.has_shard(set_name, shard) and dst.read_shard(set_name, shard).meta.get("method_id") == method_id:
                kept += 1
            else:
                dst.write_shard(set_name, shard, method.transform(src.read_shard(set_name, shard)))
                written += 1
            shard += 1
        for stale in dst.complete_shards(set_name):
            if stale >= shard:  # left over from a larger earlier version of the set
                dst.delete_shard(set_name, stale)
        per_set[set_name] = shard
    meta = dict(source_index.get("meta") or {})
    meta.update({
        "anonymized": True,
        "method": {"name": method.name, "id": method_id, "dir": str(method_dir), "dim": method.dim,
                   "output_dim": method.output_dim},
        "adapter": {"id": method_id, "dir": str(method_dir), "dim": method.dim},
        "source_uri": str(src_uri),
    })
    index = dst.write_index(meta)
    return {"method": method.name, "method_id": method_id, "adapter_id": method_id, "shards": per_set,
            "shards_written": written, "shards_kept": kept, "dst_uri": str(dst_uri),
            "videos": {name: entry.get("videos") for name, entry in index["sets"].items()}}
