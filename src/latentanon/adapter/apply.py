"""Applying a trained adapter to stored features: the anonymized store is what users share.

Moving clips and snippets go through the AAM as one sequence per video (padding masked); every
static clip is its own length-1 sequence, so no appearance leaks between static clips.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from latentanon.adapter.aam import AAM, load_adapter
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


def anonymize_store(adapter_dir, src_uri: str, dst_uri: str) -> dict:
    """Anonymize every set of the source store shard by shard into ``dst_uri``.

    Resumable: a destination shard already written by this same adapter is kept. The index meta
    records the adapter's identity and the source store.
    """
    from latentanon.features.store import FeatureStore, list_feature_sets

    adapter_dir = Path(adapter_dir)
    model = load_adapter(adapter_dir)
    adapter_id = adapter_fingerprint(model)
    src, dst = FeatureStore(src_uri), FeatureStore(dst_uri)
    source_index = src.read_index()
    written, kept, per_set = 0, 0, {}
    set_names = list(list_feature_sets(src_uri))
    for set_name in tqdm(set_names, desc="anonymize", unit="set", disable=None):
        shard = 0
        while src.has_shard(set_name, shard):
            if dst.has_shard(set_name, shard) and dst.read_shard(set_name, shard).meta.get("adapter_id") == adapter_id:
                kept += 1
            else:
                dst.write_shard(set_name, shard, anonymize_feature_set(model, src.read_shard(set_name, shard)))
                written += 1
            shard += 1
        for stale in dst.complete_shards(set_name):
            if stale >= shard:  # left over from a larger earlier version of the set
                dst.delete_shard(set_name, stale)
        per_set[set_name] = shard
    meta = dict(source_index.get("meta") or {})
    meta.update({
        "anonymized": True,
        "adapter": {"id": adapter_id, "dir": str(adapter_dir), "dim": model.dim},
        "source_uri": str(src_uri),
    })
    index = dst.write_index(meta)
    return {"adapter_id": adapter_id, "shards": per_set, "shards_written": written, "shards_kept": kept,
            "dst_uri": str(dst_uri), "videos": {name: entry.get("videos") for name, entry in index["sets"].items()}}
