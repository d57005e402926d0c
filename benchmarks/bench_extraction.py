"""Extraction throughput: clips per second through the project's extraction code.

Default (CPU): the built-in encoder at the default PretrainConfig architecture (random weights,
or --encoder-dir for a pretrained one) on synthetic 32x32 videos; model-only (clips already
decoded) and with decoding (the extract stage's DataLoader path, writing a real store).
Writes benchmarks/results/extraction_cpu.json.

--hf-videomae-base: a random-init Hugging Face VideoMAE-Base (16x224x224) through the same
code, model-only and with decoding of 224x224 videos; meant for a GPU, runs on a CPU at a
tiny batch. Writes benchmarks/results/extraction_hf_videomae_base_<device>.json.

--hf-videomae-base --variants fp32-eager,bf16-sdpa,bf16-sdpa-compile: the same model in each form
(dtype, attention kernel, torch.compile), model-only and with decoding, one after the other on
the same videos, against the anchors measured on one H200 (fp32 eager 91, bf16 + SDPA 964,
+ torch.compile 1020 clips/s, model-only). Writes
benchmarks/results/extraction_hf_videomae_base_<device>_variants.json.

    python benchmarks/bench_extraction.py [--videos 48] [--batch 64] [--workers 1]
    python benchmarks/bench_extraction.py --hf-videomae-base --videos 4 --batch 2
    python benchmarks/bench_extraction.py --hf-videomae-base --variants fp32-eager,bf16-sdpa,bf16-sdpa-compile \
        --videos 64 --batch 64 --workers 8          # on a GPU
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latentanon.data.config import DataConfig
from latentanon.data.video_io import write_video
from latentanon.encoders.builtin import BuiltinConfig, VideoEncoder
from latentanon.encoders.builtin_files import save_builtin
from latentanon.encoders.clips import video_clips
from latentanon.encoders.config import ExtractConfig, PretrainConfig
from latentanon.encoders.extraction import decode, extract_set
from latentanon.encoders.loading import load_encoder
from latentanon.features.store import FeatureStore

RESULTS = Path(__file__).resolve().parent / "results"


def make_videos(root: Path, n: int, frames: int, size: int, seed: int = 0) -> pd.DataFrame:
    """n moving-noise mp4 videos and their manifest rows (the columns extraction reads)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        video = np.stack([np.roll(base, shift=2 * t, axis=1) for t in range(frames)])
        rel = f"videos/v{i:04d}.mp4"
        write_video(root / rel, video, fps=16)
        rows.append(
            {
                "video_id": f"v{i:04d}",
                "path": rel,
                "set": "actions",
                "split": "train",
                "label": "a",
                "label_id": 0,
                "identity": str(i),
                "frames": frames,
                "fps": 16.0,
                "width": size,
                "height": size,
                "checksum": hashlib.sha256((root / rel).read_bytes()).hexdigest(),
            }
        )
    return pd.DataFrame(rows)


def model_only(encoder, clips: np.ndarray, batch: int, repeats: int) -> dict:
    """Clips/s of encoder.encode on decoded uint8 clips (host -> device, resize, forward, back)."""
    encoder.encode(clips[:batch])  # warm-up: allocations, kernels
    t0 = time.perf_counter()
    n = 0
    for _ in range(repeats):
        for lo in range(0, len(clips), batch):
            n += len(encoder.encode(clips[lo : lo + batch]))
    seconds = time.perf_counter() - t0
    return {"clips": n, "seconds": round(seconds, 3), "clips_per_second": round(n / seconds, 2)}


def with_decoding(encoder, cfg: ExtractConfig, manifest: pd.DataFrame, root: Path, clip_frames: int) -> dict:
    """Clips/s of the extract stage's own path: DataLoader decoding, batching, store writes."""
    with tempfile.TemporaryDirectory() as store_dir:
        t0 = time.perf_counter()
        stats = extract_set(
            encoder, FeatureStore(store_dir), cfg, DataConfig(clip_frames=clip_frames), "actions", manifest, root, 0, 1
        )
        seconds = time.perf_counter() - t0
    return {
        "clips": stats["clips"],
        "videos": stats["videos"],
        "seconds": round(seconds, 3),
        "clips_per_second": round(stats["clips"] / seconds, 2),
        "encode_seconds": round(stats["encode_seconds"], 3),
    }


def decoded_clips(manifest: pd.DataFrame, root: Path, cfg: ExtractConfig, clip_frames: int) -> np.ndarray:
    parts = []
    for path in manifest["path"]:
        clips = video_clips(
            decode(root / path),
            ("clips", "static"),
            clip_frames,
            cfg.clips_per_video,
            cfg.static_per_video,
            cfg.snippet_stride,
        )
        parts.extend([clips["clips"], clips["static"]])
    return np.concatenate(parts)


def environment(encoder) -> dict:
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "encoder": encoder.describe(),
    }
    if encoder.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(encoder.device)
    return info


def run(args, encoder, size: int, frames: int, out_name: str, extra: dict) -> dict:
    cfg = ExtractConfig(batch_size=args.batch, num_workers=args.workers, device=args.device, videos_per_shard=256)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = make_videos(root, args.videos, frames, size)
        clips = decoded_clips(manifest, root, cfg, 16)
        result = {
            **extra,
            "videos": args.videos,
            "clips_per_video": cfg.clips_per_video + cfg.static_per_video,
            "batch_size": args.batch,
            "decode_workers": args.workers,
            "model_only": model_only(encoder, clips, args.batch, args.repeats),
            "with_decoding": with_decoding(encoder, cfg, manifest, root, 16),
            "environment": environment(encoder),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / out_name
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, out)
    print(
        f"{extra['what']}: model-only {result['model_only']['clips_per_second']} clips/s, "
        f"with decoding {result['with_decoding']['clips_per_second']} clips/s "
        f"({args.videos} videos, batch {args.batch}, {args.workers} decode workers) -> {out}"
    )
    return result


# form -> (extract dtype, attention kernel, torch.compile)
VARIANTS = {
    "fp32-eager": ("float32", "eager", False),
    "bf16-sdpa": ("bfloat16", "sdpa", False),
    "bf16-sdpa-compile": ("bfloat16", "sdpa", True),
}
# model-only clips/s of VideoMAE-Base measured on one H200 (the reference points)
H200_ANCHORS = {"fp32-eager": 91.0, "bf16-sdpa": 964.0, "bf16-sdpa-compile": 1020.0}


def variant_encoder(directory: Path, device: str, variant: str):
    """The HF encoder of ``directory`` in one VARIANTS form."""
    if variant not in VARIANTS:
        raise SystemExit(f"--variants: unknown form {variant!r}; forms: {', '.join(VARIANTS)}")
    dtype, attention, compiled = VARIANTS[variant]
    encoder = load_encoder(f"hf:{directory}", device=device, dtype=dtype)
    encoder.model.set_attn_implementation(attention)
    if compiled:
        encoder.model = torch.compile(encoder.model)
    return encoder


def run_variants(args, directory: Path, variants: list[str]) -> dict:
    """Each form of the same model on the same videos; one JSON with every form and the anchors."""
    cfg = ExtractConfig(batch_size=args.batch, num_workers=args.workers, device=args.device, videos_per_shard=256)
    forms, device_type = {}, "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = make_videos(root, args.videos, 32, args.size)
        clips = decoded_clips(manifest, root, cfg, 16)
        for variant in variants:
            encoder = variant_encoder(directory, args.device, variant)
            device_type = encoder.device.type
            first = time.perf_counter()
            encoder.encode(clips[: args.batch])  # compile (or kernel selection) before timing
            forms[variant] = {
                "first_batch_seconds": round(time.perf_counter() - first, 3),
                "model_only": model_only(encoder, clips, args.batch, args.repeats),
                "with_decoding": with_decoding(encoder, cfg, manifest, root, 16),
                "h200_anchor_model_only_clips_per_second": H200_ANCHORS.get(variant),
                "environment": environment(encoder),
            }
            print(
                f"{variant}: model-only {forms[variant]['model_only']['clips_per_second']} clips/s, "
                f"with decoding {forms[variant]['with_decoding']['clips_per_second']} clips/s"
            )
            del encoder
            if device_type == "cuda":
                torch.cuda.empty_cache()
    result = {
        "what": f"hf VideoMAE {args.size}x{args.size} in several forms (random init)",
        "videos": args.videos,
        "clips_per_video": cfg.clips_per_video + cfg.static_per_video,
        "batch_size": args.batch,
        "decode_workers": args.workers,
        "forms": forms,
    }
    out = Path(args.out) if args.out else RESULTS / f"extraction_hf_videomae_base_{device_type}_variants.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, out)
    print(f"-> {out}")
    return result


def builtin_encoder(args):
    if args.encoder_dir:
        return load_encoder(args.encoder_dir, device=args.device, dtype=args.dtype)
    p, d = PretrainConfig(), DataConfig()
    torch.manual_seed(0)
    arch = BuiltinConfig(
        dim=p.dim,
        depth=p.depth,
        heads=p.heads,
        tubelet=p.tubelet,
        patch=p.patch,
        frames=d.clip_frames,
        height=d.height,
        width=d.width,
        positions=p.positions,
    )
    directory = Path(tempfile.mkdtemp(prefix="bench-encoder-"))
    save_builtin(VideoEncoder(arch), directory)
    return load_encoder(directory, device=args.device, dtype=args.dtype)


def videomae_base_directory(args) -> Path:
    """--hf-dir when given (a real checkpoint, or a small config in tests), else a random-init Base."""
    if args.hf_dir:
        return Path(args.hf_dir)
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    directory = Path(tempfile.mkdtemp(prefix="bench-videomae-base-"))
    VideoMAEModel(VideoMAEConfig()).save_pretrained(str(directory))  # Base: 768 wide, 12 layers, 16x224x224
    return directory


def videomae_base_encoder(args):
    return load_encoder(f"hf:{videomae_base_directory(args)}", device=args.device, dtype=args.dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf-videomae-base", action="store_true", help="random-init VideoMAE-Base, 16x224x224")
    parser.add_argument("--videos", type=int, default=48, help="synthetic videos (9 clips each: 5 clips + 4 static)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader decoding workers")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the decoded clips, model-only")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--encoder-dir", default="", help="a pretrained built-in encoder (default: random init)")
    parser.add_argument("--variants", default="", help=f"comma-separated forms of the HF model: {', '.join(VARIANTS)}")
    parser.add_argument("--hf-dir", default="", help="a local HF VideoMAE directory instead of a random-init Base")
    parser.add_argument("--size", type=int, default=224, help="frame size of the synthetic videos (--variants)")
    parser.add_argument("--out", default="", help="result JSON (--variants; default under benchmarks/results)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variants:
        if not args.hf_videomae_base:
            parser.error("--variants compares forms of the HF model: add --hf-videomae-base")
        run_variants(args, videomae_base_directory(args), [v.strip() for v in args.variants.split(",") if v.strip()])
        return 0
    if args.hf_videomae_base:
        encoder = videomae_base_encoder(args)
        name = f"extraction_hf_videomae_base_{encoder.device.type}.json"
        run(args, encoder, 224, 32, name, {"what": "hf VideoMAE-Base 16x224x224 (random init)"})
    else:
        encoder = builtin_encoder(args)
        name = (
            "extraction_cpu.json" if encoder.device.type == "cpu" else f"extraction_builtin_{encoder.device.type}.json"
        )
        run(
            args,
            encoder,
            DataConfig().height,
            DataConfig().trimmed_frames,
            name,
            {"what": "built-in encoder (default architecture)"},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
