"""Pretrain the built-in encoder with overridden settings and probe it: action vs appearance.

Trains on the data the generate stage wrote (``data.root`` of the params file, manifests under
data/manifests of the workdir), with ``pretrain_encoder`` settings overridden by a JSON object,
then runs the stage's probe (action probe on actions train -> test, attribute attackers on the
static clips of privacy_videos) with ``--clips`` clips per video. Appends one record to
benchmarks/results/encoder_variants.json (name, overrides, train seconds, probe figures).

    python benchmarks/bench_encoder_variants.py NAME '{"pathways": "two_stream"}' [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from latentanon.config import load_params
from latentanon.data.manifests import read_manifest
from latentanon.encoders import pretrain
from latentanon.encoders.builtin_files import save_builtin
from latentanon.encoders.builtin_training import train_builtin

RESULTS = Path(__file__).resolve().parent / "results" / "encoder_variants.json"
SETTINGS = ("pathways", "dim", "epochs", "appearance_weight", "supervised_weight", "rgb_dropout", "static_share")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("overrides", help="JSON object of pretrain_encoder settings")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--clips", type=int, default=1, help="probe clips (and static clips) per video")
    args = parser.parse_args()
    params = load_params(args.params)
    overrides = json.loads(args.overrides)
    cfg = replace(params.pretrain_encoder, **overrides)
    workdir = Path(params.paths.workdir)
    manifests, data_root = workdir / "data" / "manifests", workdir / params.data.root
    manifest = pretrain.training_manifest(read_manifest(manifests, "pretrain"), manifests, cfg.extra_train_sets)
    started = time.perf_counter()
    encoder, history, info = train_builtin(cfg, params.data, manifest, data_root)
    trained = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        save_builtin(encoder, tmp)
        probe_cfg = replace(cfg, probe_clips_per_video=args.clips, probe_static_per_video=args.clips, device="cpu")
        probe = pretrain.run_probe(probe_cfg, params.data, manifests, data_root, Path(tmp))
    record = {
        "name": args.name,
        "overrides": overrides,
        "probe_clips_per_video": args.clips,
        "settings": {k: getattr(cfg, k) for k in SETTINGS},
        "train_seconds": round(trained - started, 1),
        "probe_seconds": round(time.perf_counter() - trained, 1),
        "train_cpu_seconds": info["train_cpu_seconds"],
        "encoder_parameters": info["encoder_parameters"],
        "final_epoch": history[-1],
        "action_top1": probe["action_probe"]["top1"],
        "attributes": {
            a: {"cmap": r["cmap"], "chance": r["chance_cmap"]} for a, r in probe["attribute_attack_static"].items()
        },
        "machine": {"platform": platform.platform()},
    }
    records = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps([*records, record], indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("name", "action_top1", "attributes", "train_seconds")}))


if __name__ == "__main__":
    main()
