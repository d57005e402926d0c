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

from latentanon.errors import ModelError
from latentanon.features.featureset import FeatureSet
from latentanon.methods.aam import AAM

SEQUENCE_BATCH = 256  # videos per forward pass for clips / snippets
STATIC_BATCH = 4096  # static clips per forward pass


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
    outputs = [
        model(torch.from_numpy(flat[start : start + batch_size])).numpy() for start in range(0, len(flat), batch_size)
    ]
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


def anonymize_store(method_dir, src_uri: str, dst_uri: str, method=None, expected_encoder: str | None = None) -> dict:
    """Publish every set of the source store, anonymized, into ``dst_uri``: a release.

    ``method``: an already loaded (and checked) method; else the one saved in ``method_dir``.
    ``expected_encoder``: refuse a source whose encoder identity differs (what the gate measured).

    The release follows ``latentanon.features.release``: allow-listed record columns with fresh
    opaque video ids (the mapping goes beside the source store), meta naming only the method, its
    fingerprint and the encoder. Before its first write the destination is marked unapproved (the
    caller marks it approved once it is complete and made by an approved method); it then mirrors the source exactly:
    sets and shards the source lacks are removed, and a shard is kept only when it was made by this
    method from the same source shard (same fingerprint, same source checksums).
    """
    from latentanon.features import release
    from latentanon.features.store import FeatureStore
    from latentanon.methods.registry import load_method

    if method is None:
        method = load_method(Path(method_dir))
    method_id = method.fingerprint()
    src, dst = FeatureStore(src_uri), FeatureStore(dst_uri)
    source_index = src.read_index()
    encoder = release.encoder_identity(source_index.get("meta"))
    if expected_encoder is not None and encoder != expected_encoder:
        raise ModelError(
            f"{src.uri}: features made by encoder {encoder or 'unknown'}, but the method was approved "
            f"on features of encoder {expected_encoder}; refusing to publish them"
        )
    release.write_publish_status(
        dst_uri,
        release.UNAPPROVED,
        [
            "being written: these features are not approved for sharing until the gate (or `latentanon "
            "anonymize` with an approved version) says so"
        ],
        create=True,
    )
    release_id = _existing_release_id(dst) or release.new_release_id()
    mappings = release.ReleaseIds(src_uri)
    meta = release.release_meta(method.name, method_id, release_id, encoder)
    written, kept = 0, 0
    per_set: dict[str, int] = {}
    dropped: dict[str, set[str]] = {}
    for set_name in tqdm(sorted(source_index["sets"]), desc="anonymize", unit="set", disable=None):
        entry = source_index["sets"][set_name]
        for shard in entry["shards"]:
            source_files = entry["checksums"].get(_stem(shard))
            if _shard_is_current(dst, mappings, set_name, shard, method_id, release_id, source_files):
                kept += 1
                continue
            fs = method.transform(src.read_shard(set_name, shard, expected_files=source_files))
            records, dropped_here = release.release_records(fs.records, release.opaque_ids(len(fs)))
            dropped.setdefault(set_name, set()).update(dropped_here)
            source_ids = [str(v) for v in fs.records["video_id"]] if "video_id" in fs.records else []
            # the mapping first: a release shard never exists without the way back to its source
            mappings.write(
                release_id,
                set_name,
                shard,
                {
                    "method_id": method_id,
                    "source_files": source_files,
                    "ids": dict(zip(records["video_id"].tolist(), source_ids)) if source_ids else {},
                    "videos": len(fs),
                },
            )
            release.check_release_records(records, dst.backend.location(set_name))
            dst.write_shard(set_name, shard, FeatureSet(set_name, records, fs.arrays, meta=meta))
            written += 1
        per_set[set_name] = len(entry["shards"])
    present = dst._scan()  # every shard file of the destination, complete or not
    for name, shards in present.items():
        for stale in set(shards) - set(source_index["sets"].get(name, {}).get("shards", [])):
            dst.delete_shard(name, stale)
    removed_sets = sorted(name for name in present if name not in source_index["sets"])
    index = dst.write_index(meta)
    return {
        "method": method.name,
        "method_id": method_id,
        "adapter_id": method_id,
        "encoder": encoder,
        "release_id": release_id,
        "shards": per_set,
        "shards_written": written,
        "shards_kept": kept,
        "sets_removed": removed_sets,
        "dropped_columns": {k: sorted(v) for k, v in sorted(dropped.items())},
        "dst_uri": str(dst_uri),
        "videos": {name: e.get("videos") for name, e in index["sets"].items()},
    }


def _stem(shard: int) -> str:
    return f"shard-{shard:05d}"


def _existing_release_id(dst) -> str | None:
    """The release id a destination already carries (its index, else any complete shard)."""
    from latentanon.errors import StoreError

    if dst.backend.exists("index.json"):
        try:
            found = (dst.read_index().get("meta") or {}).get("release_id")
        except StoreError:
            found = None
        if found:
            return str(found)
    for name in dst.set_names():
        for shard in dst.complete_shards(name):
            found = ((dst.shard_info(name, shard) or {}).get("meta") or {}).get("release_id")
            if found:
                return str(found)
    return None


def _shard_is_current(
    dst, mappings, set_name: str, shard: int, method_id: str, release_id: str, source_files: dict | None
) -> bool:
    """A release shard made by this method, in this release, from the source shard as it is now."""
    info = dst.shard_info(set_name, shard)
    if info is None or source_files is None:
        return False
    shard_meta = info.get("meta") or {}
    if (shard_meta.get("method") or {}).get("id") != method_id or shard_meta.get("release_id") != release_id:
        return False
    mapping = mappings.read(release_id, set_name, shard)
    return (
        mapping is not None
        and mapping.get("method_id") == method_id
        and mapping.get("source_files") == source_files
        and mapping.get("videos") == info.get("videos")
    )
