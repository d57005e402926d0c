"""The pretrain stage's probe: one encoder pass per video against clips of several videos per pass.

The probe encodes two clips (or two static clips) of every actions and privacy video of its
train and test splits. Encoding each video on its own gave the encoder batches of two; now clips
of consecutive videos share a batch of up to 64 and the next videos decode in a thread meanwhile
(``encoders.probe.encode_videos``). This times both ways side by side, alternating, on the same
videos of a workdir that has run the pretrain stage (the encoder and data are read, nothing is
written there), checks that the features agree, and times the whole probe
(``encoders.pretrain.run_probe``) once.

    python benchmarks/bench_probe.py [--workdir .] [--params params.yaml] [--videos 240] [--repeats 2]
Writes benchmarks/results/probe_batching.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench_pipeline import write_result

RESULTS = Path(__file__).resolve().parent / "results" / "probe_batching.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=".")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--videos", type=int, default=240, help="actions test videos timed each way")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    from latentanon.config import Layout, load_params
    from latentanon.data.manifests import read_manifest
    from latentanon.encoders.loading import load_encoder
    from latentanon.encoders.pretrain import run_probe
    from latentanon.encoders.probe import encode_videos

    params = load_params(args.params, [f"paths.workdir={args.workdir}"])
    layout = Layout.from_params(params)
    cfg, data_cfg = params.pretrain_encoder, params.data
    encoder = load_encoder(layout.encoder_dir, device="cpu")
    actions = read_manifest(layout.manifests, "actions")
    rows = actions[actions["split"] == "test"].head(args.videos).reset_index(drop=True)
    per_video = cfg.probe_clips_per_video

    def timed(batch_size: int) -> tuple[float, list[np.ndarray]]:
        started = time.perf_counter()
        features = encode_videos(
            encoder,
            rows,
            layout.data_root,
            "clips",
            data_cfg.clip_frames,
            per_video,
            batch_size=batch_size,
            desc=f"batch {batch_size}",
        )
        return time.perf_counter() - started, features

    seconds = {"one_video_per_pass": [], "batches_of_64": []}
    for _ in range(args.repeats):
        for name, batch_size in (("one_video_per_pass", per_video), ("batches_of_64", 64)):
            wall, features = timed(batch_size)
            seconds[name].append(round(wall, 3))
            if name == "one_video_per_pass":
                alone = features
            else:
                largest = max(float(np.abs(a - b).max()) for a, b in zip(alone, features))
    best = {k: min(v) for k, v in seconds.items()}
    started = time.perf_counter()
    probe = run_probe(cfg, data_cfg, layout.manifests, layout.data_root, layout.encoder_dir)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "videos": len(rows),
        "clips_per_video": per_video,
        "repeats": args.repeats,
        "seconds": seconds,
        "best_seconds": best,
        "speedup": round(best["one_video_per_pass"] / best["batches_of_64"], 2),
        "largest_feature_difference": largest,
        "whole_probe_seconds": round(time.perf_counter() - started, 2),
        "whole_probe_action_top1": probe["action_probe"]["top1"],
    }
    print(
        f"{len(rows)} videos x {per_video} clips: one video per pass {best['one_video_per_pass']:.2f} s, "
        f"batches of 64 {best['batches_of_64']:.2f} s ({result['speedup']}x); largest feature difference "
        f"{largest:.2e}; whole probe {result['whole_probe_seconds']} s (action top-1 "
        f"{result['whole_probe_action_top1']:.3f})"
    )
    print(f"written {write_result(result, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
