"""The ``extract`` stage: frozen-encoder features of every benchmark set, written shard by shard.

Per set (manifest name) the kinds of features written (static only for the sets in
``extract.static_sets``):

    actions, privacy_videos, bias:  clips (evenly spaced) + static
    untrimmed, anomaly:             snippets (strided) + static
    privacy_images:                 static (one per image)

Shard s of a set holds manifest rows [s * videos_per_shard, (s + 1) * videos_per_shard) and
belongs to worker s % num_workers. A shard already in the store is skipped, so a killed run
resumes where it stopped. Clips are batched within one shard only, so a shard's features do
not depend on which shards were already done: a resumed run is bitwise equal to an
uninterrupted one on the CPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from latentanon.data.config import DataConfig
from latentanon.data.layouts import IMAGE_SUFFIXES
from latentanon.encoders.base import ClipEncoder
from latentanon.encoders.clips import clip_plan, stream_clips, tile
from latentanon.encoders.config import ExtractConfig
from latentanon.errors import DataError, StoreError
from latentanon.features.featureset import FeatureSet

log = logging.getLogger(__name__)

SET_KINDS: dict[str, tuple[str, ...]] = {
    "actions": ("clips", "static"),
    "privacy_videos": ("clips", "static"),
    "privacy_images": ("static",),
    "untrimmed": ("snippets", "static"),
    "anomaly": ("snippets", "static"),
    "bias": ("clips", "static"),
}
META_KEY = "extraction"


def set_kinds(set_name: str, cfg: ExtractConfig) -> tuple[str, ...]:
    """The kinds of features extract writes for one set under these settings."""
    kinds = SET_KINDS[set_name]
    return kinds if set_name in cfg.static_sets else tuple(k for k in kinds if k != "static")


# Gaps between the frames clips use longer than this are skipped by seeking, not decoded: about
# a default x264 keyframe interval, so short (trimmed) videos are always read straight through.
SEEK_GAP_FRAMES = 250


def video_frame_count(path: Path, frames: int) -> int:
    """The manifest's frame count, or (unknown: -1) a decode-only scan of the file."""
    if frames > 0:
        return int(frames)
    from latentanon.data.video_io import scan_video

    return scan_video(path)["frames"]


def iter_video_clips(
    path: Path,
    frames: int,
    kinds: tuple[str, ...],
    clip_frames: int,
    cfg: ExtractConfig,
    size: tuple[int, int] | None = None,
):
    """(kind, j, (clip_frames, h, w, 3) uint8) for every clip of one video or image, in
    video_clips' order, decoded in one streaming pass: frames are resized in the decoder to
    ``size`` (the encoder's frame size; cover + centre crop) and only the frames a clip uses are
    kept, so memory does not grow with the video's length. ``frames``: the manifest's count."""
    from latentanon.data.video_io import frame_rgb, iter_frames, read_image, resize_image

    if path.suffix.lower() in IMAGE_SUFFIXES:  # an image has only a static clip
        image = resize_image(read_image(path), size)
        if "static" in kinds:
            yield "static", 0, tile(image, clip_frames)
        return
    n = video_frame_count(path, frames)
    plan = clip_plan(n, kinds, clip_frames, cfg.clips_per_video, cfg.static_per_video, cfg.snippet_stride)
    # evenly spaced clips of a long video: seek over the long gaps between them (snippets cover
    # the whole video, so those are decoded straight through)
    wanted = sorted({i for _, _, indices in plan for i in indices}) if "snippets" not in kinds else None
    frame_iter = iter_frames(path, wanted=wanted, seek_gap=SEEK_GAP_FRAMES)
    count = 0
    for item in stream_clips(frame_iter, plan, lambda frame: frame_rgb(frame, size)):
        count += 1
        yield item
    if count < len(plan):
        raise DataError(f"{path}: video has no decodable frames")


class VideoClipsDataset(IterableDataset):
    """Streams the clips of whole shards: ("clip", shard, video, kind, j, clip) items, then
    ("video", shard, video) when a video is done and ("shard", shard) when a shard is. With
    several loader workers each takes every n-th shard, so one shard's clips always arrive in
    order from one worker (its batches, hence its features, do not depend on the others)."""

    def __init__(
        self,
        shards: list[tuple[int, list[Path], list[int]]],
        kinds: tuple[str, ...],
        clip_frames: int,
        cfg: ExtractConfig,
        size: tuple[int, int] | None = None,
    ):
        self.shards = shards  # (shard number, video paths, manifest frame counts)
        self.kinds = kinds
        self.clip_frames = clip_frames
        self.cfg = cfg
        self.size = size

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for position, (shard, paths, frames) in enumerate(self.shards):
            if position % workers != worker:
                continue
            for k, (path, n) in enumerate(zip(paths, frames)):
                for kind, j, clip in iter_video_clips(path, n, self.kinds, self.clip_frames, self.cfg, self.size):
                    yield "clip", shard, k, kind, j, clip
                yield "video", shard, k
            yield "shard", shard


def decode(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a whole video, or (1, H, W, 3) for an image (resized to
    ``size`` like iter_video_clips when given). For short videos only: it holds every frame."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from latentanon.data.video_io import read_image, resize_image

        return resize_image(read_image(path), size)[None]
    from latentanon.data.video_io import read_video

    return read_video(path, size)


def _as_is(sample):
    """Keep each item as it is (numpy clips, no tensor conversion, no batching)."""
    return sample


class ShardEncoder:
    """Encodes the clips of one shard in fixed batches and gathers them back per video and kind."""

    def __init__(self, encoder: ClipEncoder, batch_size: int, n_videos: int, kinds: tuple[str, ...]):
        self.encoder = encoder
        self.batch_size = batch_size
        self.pending: list[tuple[int, str, int, np.ndarray]] = []
        self.out: dict[str, list[list[np.ndarray | None]]] = {k: [[] for _ in range(n_videos)] for k in kinds}
        self.clips_encoded = 0
        self.encode_seconds = 0.0

    def add(self, video: int, kind: str, j: int, clip: np.ndarray) -> None:
        """One clip; clips of a shard are added in a fixed order, so its batches are fixed too."""
        self.out[kind][video].append(None)
        self.pending.append((video, kind, j, clip))
        if len(self.pending) >= self.batch_size:
            self._run(self.batch_size)

    def _run(self, n: int) -> None:
        batch, self.pending = self.pending[:n], self.pending[n:]
        t0 = time.perf_counter()
        features = self.encoder.encode(np.stack([c for *_, c in batch]))
        self.encode_seconds += time.perf_counter() - t0
        self.clips_encoded += len(batch)
        for (video, kind, j, _), feature in zip(batch, features):
            self.out[kind][video][j] = feature

    def finish(self, dim: int) -> dict[str, list[np.ndarray]]:
        while self.pending:
            self._run(min(self.batch_size, len(self.pending)))
        return {
            # the loop above ran every pending clip, so no placeholder None is left
            kind: [
                np.stack(cast(list[np.ndarray], v)).astype(np.float32) if v else np.zeros((0, dim), np.float32)
                for v in videos
            ]
            for kind, videos in self.out.items()
        }


def shard_ranges(n_rows: int, videos_per_shard: int) -> list[tuple[int, int]]:
    return [
        (s * videos_per_shard, min(n_rows, (s + 1) * videos_per_shard))
        for s in range(math.ceil(n_rows / videos_per_shard))
    ]


def _check_args(cfg: ExtractConfig, worker: int, num_workers: int) -> None:
    if num_workers < 1 or not 0 <= worker < num_workers:
        raise DataError(f"extract: worker {worker} of {num_workers} workers is not a valid assignment")
    for name in ("batch_size", "clips_per_video", "static_per_video", "snippet_stride", "videos_per_shard"):
        if getattr(cfg, name) < 1:
            raise DataError(f"extract.{name} must be at least 1, got {getattr(cfg, name)}")
    unknown = sorted(set(cfg.sets) - set(SET_KINDS))
    if unknown:
        raise DataError(f"extract.sets: unknown sets {unknown} (known: {', '.join(SET_KINDS)})")
    unknown = sorted(set(cfg.static_sets) - set(SET_KINDS))
    if unknown:
        raise DataError(f"extract.static_sets: unknown sets {unknown} (known: {', '.join(SET_KINDS)})")
    empty = [name for name in cfg.sets if not set_kinds(name, cfg)]
    if empty:
        raise DataError(f"extract.static_sets must include {empty}: those sets have only static clips")


def extraction_meta(
    cfg: ExtractConfig, data_cfg: DataConfig, encoder: ClipEncoder, set_name: str, manifest: pd.DataFrame, n_shards: int
) -> dict:
    """What the index records about how a set's features were made."""
    from latentanon.data.loaders import manifest_hash

    return {
        "set": set_name,
        "kinds": list(set_kinds(set_name, cfg)),
        "encoder": encoder.describe(),
        "manifest_hash": manifest_hash(manifest),
        "videos": int(len(manifest)),
        "num_shards": n_shards,
        "clip_frames": data_cfg.clip_frames,
        "params": asdict(cfg),
    }


def shard_is_current(store, set_name: str, shard: int, meta: dict) -> bool:
    """A complete shard made from the same manifest, encoder and params (else it is redone)."""
    from latentanon.features.shards import to_jsonable

    if not store.has_shard(set_name, shard):
        return False
    try:
        stored = store.read_shard(set_name, shard).meta
    except StoreError as exc:
        log.warning("redoing shard %d of %s: %s", shard, set_name, exc)
        return False
    return stored == to_jsonable(meta)


def extract_set(
    encoder: ClipEncoder,
    store,
    cfg: ExtractConfig,
    data_cfg: DataConfig,
    set_name: str,
    manifest: pd.DataFrame,
    data_root: Path,
    worker: int,
    num_workers: int,
) -> dict:
    """Write this worker's missing shards of one set; returns counts and timings."""
    kinds = set_kinds(set_name, cfg)
    ranges = shard_ranges(len(manifest), cfg.videos_per_shard)
    meta = extraction_meta(cfg, data_cfg, encoder, set_name, manifest, len(ranges))
    mine = [s for s in range(len(ranges)) if s % num_workers == worker]
    todo = [s for s in mine if not shard_is_current(store, set_name, s, meta)]
    stats = {
        "shards": len(ranges),
        "assigned": len(mine),
        "skipped": len(mine) - len(todo),
        "written": 0,
        "videos": 0,
        "clips": 0,
        "encode_seconds": 0.0,
    }
    if not todo:
        return stats
    frame_counts = (manifest["frames"] if "frames" in manifest else pd.Series(-1, index=manifest.index)).to_numpy()
    from latentanon.data.loaders.common import contained_path

    # the loaders' rule: a manifest row never names a file outside the data root
    paths = [
        contained_path(data_root, p, f"manifest of set {set_name!r}, row {i}") for i, p in enumerate(manifest["path"])
    ]
    shards = [(s, paths[slice(*ranges[s])], [int(n) for n in frame_counts[slice(*ranges[s])]]) for s in todo]
    dataset = VideoClipsDataset(
        shards, kinds, data_cfg.clip_frames, cfg, size=(encoder.frame_size[0], encoder.frame_size[1])
    )
    # items are single clips: let each worker run a couple of batches ahead of the encoder
    loader = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=cfg.num_workers,
        collate_fn=_as_is,
        prefetch_factor=max(4, 2 * cfg.batch_size) if cfg.num_workers else None,
    )
    bar = tqdm(total=sum(len(paths) for _, paths, _ in shards), desc=f"extract {set_name}", unit="video", disable=None)
    open_shards: dict[int, ShardEncoder] = {}
    for item in loader:
        s = item[1]
        if s not in open_shards:
            open_shards[s] = ShardEncoder(encoder, cfg.batch_size, ranges[s][1] - ranges[s][0], kinds)
        if item[0] == "clip":
            open_shards[s].add(*item[2:])
        elif item[0] == "video":
            bar.update(1)
        else:
            shard = open_shards.pop(s)
            lo, hi = ranges[s]
            arrays = shard.finish(encoder.dim)
            records = manifest.iloc[lo:hi].reset_index(drop=True)
            store.write_shard(set_name, s, FeatureSet(set_name, records, arrays, meta=meta))
            stats["written"] += 1
            stats["videos"] += hi - lo
            stats["clips"] += shard.clips_encoded
            stats["encode_seconds"] += shard.encode_seconds
    bar.close()
    return stats


def extract_features(
    cfg: ExtractConfig,
    data_cfg: DataConfig,
    manifests_dir: str | Path,
    data_root: str | Path,
    encoder_dir: str | Path,
    store_uri: str,
    worker: int = 0,
    num_workers: int = 1,
) -> dict:
    """The extract stage (one worker's part of it). Returns a summary of what was written and how fast."""
    from latentanon.data.manifests import read_manifest
    from latentanon.encoders.loading import load_encoder
    from latentanon.features.store import FeatureStore

    _check_args(cfg, worker, num_workers)
    t0 = time.perf_counter()
    manifests = {name: read_manifest(manifests_dir, name) for name in cfg.sets}
    encoder = load_encoder(Path(encoder_dir), device=cfg.device, dtype=cfg.dtype)
    store = FeatureStore(store_uri)
    per_set = {}
    threads = torch.get_num_threads()
    if encoder.device.type == "cpu" and cfg.num_workers:
        # leave the decoding workers their cores: oversubscribed intra-op threads spin and stall
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - cfg.num_workers)))
    try:
        for name, manifest in manifests.items():
            if manifest.empty:
                raise DataError(f"{Path(manifests_dir) / (name + '.csv')}: manifest of set {name!r} has no rows")
            per_set[name] = extract_set(
                encoder, store, cfg, data_cfg, name, manifest, Path(data_root), worker, num_workers
            )
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    clips = sum(s["clips"] for s in per_set.values())
    encode_seconds = sum(s["encode_seconds"] for s in per_set.values())
    return {
        "worker": worker,
        "num_workers": num_workers,
        "encoder": encoder.describe(),
        "store": str(store_uri),
        "sets": per_set,
        "clips": clips,
        "seconds": round(seconds, 3),
        "clips_per_second": round(clips / seconds, 2) if clips else 0.0,
        "clips_per_second_model_only": round(clips / encode_seconds, 2) if encode_seconds else 0.0,
    }


def finalize_store(uri: str) -> dict:
    """Check every extracted set is complete and consistent, then write the store's index.

    Shards numbered beyond a set's current shard count (left by an earlier, larger manifest)
    are removed first. The index meta records the encoder identity, the extract params and,
    per set, the manifest hash.
    """
    from latentanon.features.store import FeatureStore

    store = FeatureStore(uri)
    names = [n for n in store.set_names() if n in SET_KINDS]
    if not names:
        raise StoreError(f"{store.uri}: no extracted feature sets to finalize (run extract first)")
    sets, encoders, params, firsts = {}, {}, {}, {}
    for name in names:
        shards = store.complete_shards(name)
        if not shards:
            raise StoreError(f"{store.uri}: set {name!r} has no complete shard; rerun extract")
        metas = {s: store.read_shard(name, s).meta for s in shards}
        expected = metas[shards[0]].get("num_shards")
        if expected is None:
            raise StoreError(f"{store.uri}: set {name!r} was not written by extract (no extraction meta)")
        for stale in [s for s in shards if s >= expected]:
            store.delete_shard(name, stale)
            metas.pop(stale)
        missing = sorted(set(range(expected)) - set(metas))
        if missing:
            raise StoreError(
                f"{store.uri}: set {name!r} lacks shard(s) {missing} of {expected}; "
                "run the remaining extract workers (a rerun resumes)"
            )
        if len({json.dumps(m, sort_keys=True) for m in metas.values()}) > 1:
            raise StoreError(
                f"{store.uri}: shards of set {name!r} come from different manifests, encoders or "
                "params; rerun extract to redo the outdated ones"
            )
        meta = firsts[name] = metas[0]
        encoders[name] = meta["encoder"]["identity"]
        params[name] = meta["params"]
        sets[name] = {"manifest_hash": meta["manifest_hash"], "videos": meta["videos"], "kinds": meta["kinds"]}
    if len(set(encoders.values())) > 1:
        raise StoreError(f"{store.uri}: sets were extracted with different encoders {encoders}; re-extract them")
    if len({json.dumps(p, sort_keys=True) for p in params.values()}) > 1:
        raise StoreError(f"{store.uri}: sets were extracted with different extract params; re-extract them")
    first = firsts[names[0]]
    index_meta = {
        "encoder": first["encoder"],
        "extract": first["params"],
        "clip_frames": first["clip_frames"],
        "sets": sets,
    }
    index = store.write_index(index_meta)
    return {
        "uri": store.uri,
        "encoder": first["encoder"]["identity"],
        "sets": {
            n: {"videos": e["videos"], "shards": len(e["shards"]), "rows": e["rows"]} for n, e in index["sets"].items()
        },
    }
