"""The whole smoke pipeline with a Hugging Face video encoder from a local directory (a tiny random
VideoMAE saved with save_pretrained, as docs/own-data.md describes for a real checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentanon import cli

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = 24  # the encoder's feature width: what every store and the method must then carry


def _tiny_videomae(directory: Path) -> Path:
    import torch

    torch.manual_seed(0)
    config = transformers.VideoMAEConfig(
        image_size=32,
        patch_size=16,
        num_frames=4,
        tubelet_size=2,
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
    )
    transformers.VideoMAEModel(config).save_pretrained(str(directory))
    return directory


@pytest.mark.slow
def test_smoke_pipeline_runs_end_to_end_with_a_local_hf_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder_dir = _tiny_videomae(tmp_path / "videomae-tiny")
    workdir = tmp_path / "run"
    # the smoke profile, trimmed further where the encoder is not what is tested
    overrides = [
        f"paths.workdir={workdir}",
        f"data.root={tmp_path / 'benchmark'}",
        f"pretrain_encoder.encoder=hf:{encoder_dir}",
        "pretrain_encoder.device=cpu",
        "extract.device=cpu",
        "tune.n_trials=1",
        "train.bottleneck.steps=40",
        "evaluate.seeds=[0]",
        "evaluate.methods=[rotation]",
        "evaluate.bootstrap=100",
        "audit_bias.seeds=[0]",
    ]
    argv = ["run", "--params", str(ROOT / "params.smoke.yaml")]
    for item in overrides:
        argv += ["--set", item]
    assert cli.main(argv) == 0

    encoder = json.loads((workdir / "reports" / "pretrain_encoder" / "summary.json").read_text())
    assert encoder["trained"] is False and encoder["encoder"].startswith("hf:videomae:")
    index = json.loads((workdir / "features" / "index.json").read_text())
    assert encoder["encoder"] in json.dumps(index["meta"]), "the store records the encoder it was made with"
    assert index["sets"]["actions"]["dim"] == HIDDEN
    from latentanon.features.store import load_feature_set

    actions = load_feature_set(str(workdir / "features"), "actions")
    assert actions.kind("clips")[0].shape[-1] == HIDDEN
    method = json.loads((workdir / "models" / "method" / "method.json").read_text())
    assert method["dim"] == HIDDEN
    decision = json.loads((workdir / "reports" / "gate" / "decision.json").read_text())
    assert decision["decision"] in ("approved", "rejected")
    assert (workdir / "reports" / "report.md").exists()
