"""bench_extraction.py's comparison of one HF model's forms (fp32 eager, bf16 + SDPA, + compile): each
form is really what it says, and the run writes every form's model-only and decoding figures.
On CPU with a tiny VideoMAE; the GPU run (VideoMAE-Base) is the same command with other sizes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_extraction as bench

transformers = pytest.importorskip("transformers")


@pytest.fixture
def tiny_videomae(tmp_path) -> Path:
    torch.manual_seed(0)
    config = transformers.VideoMAEConfig(
        image_size=32,
        patch_size=16,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    directory = tmp_path / "videomae"
    transformers.VideoMAEModel(config).save_pretrained(str(directory))
    return directory


def test_each_form_sets_dtype_and_attention_and_encodes_alike(tiny_videomae):
    clips = np.random.default_rng(0).integers(0, 256, size=(3, 16, 32, 32, 3), dtype=np.uint8)
    eager = bench.variant_encoder(tiny_videomae, "cpu", "fp32-eager")
    sdpa = bench.variant_encoder(tiny_videomae, "cpu", "bf16-sdpa")
    assert eager.model.config._attn_implementation == "eager" and eager.dtype == torch.float32
    assert sdpa.model.config._attn_implementation == "sdpa" and sdpa.dtype == torch.bfloat16
    reference, fast = eager.encode(clips), sdpa.encode(clips)
    assert fast.shape == reference.shape == (3, 32)
    # bf16 keeps about 3 significant digits: the same features, not the same bits
    np.testing.assert_allclose(fast, reference, atol=0.1, rtol=0.05)
    with pytest.raises(SystemExit, match="unknown form"):
        bench.variant_encoder(tiny_videomae, "cpu", "fp8")


def test_variants_run_writes_every_form_with_decoding(tiny_videomae, tmp_path):
    out = tmp_path / "variants.json"
    assert (
        bench.main(
            [
                "--hf-videomae-base",
                "--hf-dir",
                str(tiny_videomae),
                "--variants",
                "fp32-eager,bf16-sdpa",
                "--videos",
                "2",
                "--batch",
                "4",
                "--workers",
                "0",
                "--size",
                "32",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert list(result["forms"]) == ["fp32-eager", "bf16-sdpa"]
    for form, block in result["forms"].items():
        assert block["model_only"]["clips"] == 2 * result["clips_per_video"]
        assert block["with_decoding"]["videos"] == 2 and block["with_decoding"]["clips_per_second"] > 0
        assert block["h200_anchor_model_only_clips_per_second"] == bench.H200_ANCHORS[form]
        assert block["environment"]["encoder"]["dtype"] == bench.VARIANTS[form][0]
