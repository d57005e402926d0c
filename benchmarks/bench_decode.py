"""Decode throughput and memory: the old whole-video read against the streaming clip reader.

Sources are made here with PyAV (H.264, 30 fps, a moving textured image, so the decoder has
real work): 1280x720 and 320x240, 60 s each. Each measurement runs in its own subprocess, which
reports frames, wall and CPU seconds and its peak RSS (resource.getrusage ru_maxrss):

- old path: data.video_io.read_video at full resolution (every frame as RGB in memory), then
  the untrimmed set's clips (snippets + static) cut from it. Its memory grows with the video's
  length (2.7 MB per 1280x720 frame), so it is measured on the first OLD_PREFIX_S seconds only
  (a separate file with the same content); the new path is measured on that prefix too, and
  the ratios compare the two on the same prefix.
- new path: encoders.extraction.iter_video_clips (one streaming pass, frames resized to the
  encoder's 32x32 in the decoder, only the frames a clip uses kept), on the prefix and on the
  whole 60 s.
- the extract stage on a 10-minute 1280x720 video (untrimmed kinds, a tiny built-in encoder
  saved to disk, a real feature store; decoding in the measured process, extract.num_workers=0,
  so one ru_maxrss covers all of it): peak RSS must stay under 1.5 GB.

Per-core figures are frames per CPU-second (user + system) of the child. The anchor from the
issue is OpenCV/FFmpeg on 16 cores: 1.4k frames/s at 1280x720 and 19.1k frames/s at 340x256,
about 90 and 1200 frames/s per core.

    python benchmarks/bench_decode.py [--seconds 60] [--long-minutes 10] [--old-prefix 5]
Writes benchmarks/results/decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
FPS = 30
CLIP_FRAMES = 16
ENCODER_SIZE = (32, 32)
ANCHOR_PER_CORE = {"1280x720": 1400 / 16, "320x240": 19100 / 16}  # 340x256 in the anchor
RSS_LIMIT_MB = 1536


def make_source(path: Path, width: int, height: int, seconds: float, seed: int = 0) -> int:
    """A moving, slowly changing texture; returns the frame count."""
    import av

    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = texture.repeat(8, 0).repeat(8, 1)  # 8x8 blocks: cheap to make, real to code
    frames = int(round(seconds * FPS))
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23", "g": "60"}
        for t in range(frames):
            dy, dx = (t * 2) % 8, (t * 3) % 8
            frame = texture[dy : dy + height, dx : dx + width].copy()
            frame[:, :, t % 3] ^= np.uint8(t % 32)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames


# ----------------------------------------------------------------------------- children


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, path: str, frames: int, workdir: str) -> dict:
    """One measurement; runs in a fresh process so ru_maxrss is this measurement's peak."""
    from latentanon.encoders.config import ExtractConfig
    from latentanon.encoders.extraction import iter_video_clips

    cfg = ExtractConfig()
    kinds = ("snippets", "static")
    baseline = _rss_mb()
    usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    clips = 0
    if mode == "old":
        from latentanon.data.video_io import read_video
        from latentanon.encoders.clips import video_clips

        video = read_video(path)
        decoded = int(video.shape[0])
        clips = sum(
            len(v)
            for v in video_clips(
                video, kinds, CLIP_FRAMES, cfg.clips_per_video, cfg.static_per_video, cfg.snippet_stride
            ).values()
        )
    elif mode == "new":
        for _ in iter_video_clips(Path(path), frames, kinds, CLIP_FRAMES, cfg, size=ENCODER_SIZE):
            clips += 1
        decoded = frames
    elif mode == "extract":
        decoded, clips = frames, _extract_one(Path(path), frames, Path(workdir))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    return {
        "mode": mode,
        "frames": decoded,
        "clips": clips,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "frames_per_second": round(decoded / seconds, 1),
        "frames_per_cpu_second": round(decoded / cpu, 1) if cpu else None,
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def _extract_one(path: Path, frames: int, workdir: Path) -> int:
    """The extract stage's own code on one untrimmed video: streaming reader, tiny encoder, store."""
    import pandas as pd
    import torch

    from latentanon.data.config import DataConfig
    from latentanon.encoders.builtin import BuiltinConfig, VideoEncoder
    from latentanon.encoders.builtin_files import save_builtin
    from latentanon.encoders.config import ExtractConfig
    from latentanon.encoders.extraction import extract_set
    from latentanon.encoders.loading import load_encoder
    from latentanon.features.store import FeatureStore

    torch.manual_seed(0)
    save_builtin(
        VideoEncoder(BuiltinConfig(dim=16, depth=1, heads=2, frames=16, height=32, width=32)), workdir / "encoder"
    )
    encoder = load_encoder(workdir / "encoder", device="cpu")
    manifest = pd.DataFrame(
        [
            {
                "video_id": path.stem,
                "path": path.name,
                "set": "untrimmed",
                "split": "test",
                "label": "",
                "label_id": -1,
                "identity": -1,
                "frames": frames,
                "fps": float(FPS),
                "width": 1280,
                "height": 720,
                "checksum": "",
                "segments": "[]",
            }
        ]
    )
    # decoding in this process (no loader worker), so its RSS and CPU time are all measured here
    cfg = ExtractConfig(batch_size=64, num_workers=0, device="cpu")
    stats = extract_set(
        encoder,
        FeatureStore(str(workdir / "store")),
        cfg,
        DataConfig(clip_frames=CLIP_FRAMES),
        "untrimmed",
        manifest,
        path.parent,
        0,
        1,
    )
    return int(stats["clips"])


def measure(mode: str, path: Path, frames: int, workdir: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path), str(frames), str(workdir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{mode} on {path.name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"  {mode:7s} {path.name:28s} {result['frames']:6d} frames  {result['frames_per_second']:8.1f} frames/s  "
        f"{result['frames_per_cpu_second'] or 0:8.1f} frames/CPU-s  peak RSS {result['peak_rss_mb']:7.1f} MB",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--old-prefix", type=float, default=5.0, help="seconds the old path reads")
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "PATH", "FRAMES", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, path, frames, workdir = args.child
        print(json.dumps(child(mode, path, int(frames), workdir)))
        return
    result = {
        "fps": FPS,
        "encoder_size": list(ENCODER_SIZE),
        "kinds": ["snippets", "static"],
        "old_path": f"read_video at full resolution, measured on the first {args.old_prefix:g} s only "
        "(its memory grows with length)",
        "new_path": "iter_video_clips: one streaming pass, resized in the decoder, only used frames kept",
        "sources": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for width, height in ((1280, 720), (320, 240)):
            name = f"{width}x{height}"
            print(f"{name}: making {args.seconds:g} s and {args.old_prefix:g} s sources", flush=True)
            full, prefix = tmp / f"{name}_full.mp4", tmp / f"{name}_prefix.mp4"
            n_full = make_source(full, width, height, args.seconds)
            n_prefix = make_source(prefix, width, height, args.old_prefix)
            old = measure("old", prefix, n_prefix, tmp)
            new_prefix = measure("new", prefix, n_prefix, tmp)
            new_full = measure("new", full, n_full, tmp)
            result["sources"][name] = {
                "seconds": args.seconds,
                "old_prefix_seconds": args.old_prefix,
                "old_on_prefix": old,
                "new_on_prefix": new_prefix,
                "new_on_full": new_full,
                "speedup_new_over_old_on_prefix": round(new_prefix["frames_per_second"] / old["frames_per_second"], 2),
                "cpu_speedup_new_over_old_on_prefix": round(
                    new_prefix["frames_per_cpu_second"] / old["frames_per_cpu_second"], 2
                ),
                "peak_rss_ratio_old_over_new_on_prefix": round(old["peak_rss_mb"] / new_prefix["peak_rss_mb"], 2),
                "old_rss_growth_mb_per_frame": round((old["peak_rss_mb"] - old["baseline_rss_mb"]) / n_prefix, 3),
                "new_peak_rss_growth_prefix_to_full_mb": round(new_full["peak_rss_mb"] - new_prefix["peak_rss_mb"], 1),
                "new_frames_per_cpu_second": new_full["frames_per_cpu_second"],
                "anchor_frames_per_core": round(ANCHOR_PER_CORE[name], 1),
            }
        if args.long_minutes > 0:
            print(f"1280x720: making a {args.long_minutes:g}-minute source for the extract stage", flush=True)
            long_video = tmp / "long_1280x720.mp4"
            n_long = make_source(long_video, 1280, 720, args.long_minutes * 60)
            extract = measure("extract", long_video, n_long, tmp)
            result["extract_long_1280x720"] = {
                **extract,
                "minutes": args.long_minutes,
                "rss_limit_mb": RSS_LIMIT_MB,
                "under_limit": extract["peak_rss_mb"] < RSS_LIMIT_MB,
            }
    result["environment"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "decode.json"
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, out)
    for name, entry in result["sources"].items():
        print(
            f"{name}: new/old speed {entry['speedup_new_over_old_on_prefix']}x (per CPU-second "
            f"{entry['cpu_speedup_new_over_old_on_prefix']}x), old/new peak RSS "
            f"{entry['peak_rss_ratio_old_over_new_on_prefix']}x on the {args.old_prefix:g} s prefix; new path "
            f"{entry['new_frames_per_cpu_second']} frames per CPU-second (anchor {entry['anchor_frames_per_core']})"
        )
    if "extract_long_1280x720" in result:
        e = result["extract_long_1280x720"]
        print(
            f"extract, {args.long_minutes:g} min 1280x720: peak RSS {e['peak_rss_mb']} MB "
            f"(limit {RSS_LIMIT_MB}), {e['frames_per_second']} frames/s -> {out}"
        )


if __name__ == "__main__":
    main()
