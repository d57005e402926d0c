"""Hugging Face video encoders from local directories: tiny random configs saved with save_pretrained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentanon.encoders.hf import HFVideoEncoder
from latentanon.encoders.loading import load_encoder
from latentanon.errors import ModelError

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def _videomae(**extra):
    config = transformers.VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, **TINY, **extra)
    return transformers.VideoMAEModel(config)


def _videomae_classifier():
    config = transformers.VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, num_labels=3, use_mean_pooling=True, **TINY
    )
    return transformers.VideoMAEForVideoClassification(config)


def _timesformer():
    config = transformers.TimesformerConfig(image_size=32, patch_size=16, num_frames=4, **TINY)
    return transformers.TimesformerModel(config)


def _vjepa2():
    config = transformers.VJEPA2Config(
        crop_size=32,
        patch_size=16,
        frames_per_clip=8,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        pred_hidden_size=32,
        pred_num_hidden_layers=1,
        pred_num_attention_heads=2,
        num_pooler_layers=1,
    )
    return transformers.VJEPA2Model(config)


BUILDERS = {"videomae": _videomae, "timesformer": _timesformer, "vjepa2": _vjepa2}


def _save(model, path):
    torch.manual_seed(0)
    model.save_pretrained(str(path))
    return path


def _clips(n=3, frames=16, height=24, width=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, frames, height, width, 3), dtype=np.uint8)


def _reference_pixels(clips, frames, size, mean, std):
    """What the model should see: evenly spaced frames, bilinear resize, normalised, (B, T, 3, H, W)."""
    x = torch.from_numpy(clips)
    idx = torch.from_numpy(np.linspace(0, clips.shape[1] - 1, frames).round().astype(np.int64))
    x = x[:, idx].permute(0, 1, 4, 2, 3).float() / 255.0
    b, t = x.shape[:2]
    x = (
        torch.nn.functional.interpolate(
            x.reshape(b * t, 3, *x.shape[-2:]), size=size, mode="bilinear", align_corners=False, antialias=True
        )
        .clamp(0, 1)
        .reshape(b, t, 3, *size)
    )
    return (x - torch.tensor(mean).view(1, 1, 3, 1, 1)) / torch.tensor(std).view(1, 1, 3, 1, 1)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_each_family_loads_from_a_directory_and_encodes(tmp_path, kind):
    model = BUILDERS[kind]()
    directory = _save(model, tmp_path / kind)
    encoder = load_encoder(f"hf:{directory}", device="cpu")
    assert isinstance(encoder, HFVideoEncoder)
    assert encoder.dim == 32
    assert encoder.identity.startswith(f"hf:{kind}:")
    features = encoder.encode(_clips())
    assert features.shape == (3, 32) and features.dtype == np.float32
    assert np.isfinite(features).all()
    # a clip's feature does not depend on the other clips in its batch
    np.testing.assert_allclose(encoder.encode(_clips()[1:2]), features[1:2], atol=1e-5)
    # the same directory through a plain path gives the same encoder
    assert load_encoder(directory, device="cpu").identity == encoder.identity


def test_videomae_pools_by_mean_of_last_hidden_state(tmp_path):
    model = _videomae().eval()
    encoder = load_encoder(f"hf:{_save(model, tmp_path / 'm')}", device="cpu")
    clips = _clips()
    pixels = _reference_pixels(clips, 4, (32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        expected = model(pixel_values=pixels).last_hidden_state.mean(1).numpy()
    np.testing.assert_allclose(encoder.encode(clips), expected, atol=1e-5)


def test_videomae_classification_checkpoint_uses_its_fc_norm(tmp_path):
    model = _videomae_classifier().eval()
    with torch.no_grad():
        model.fc_norm.weight.uniform_(0.5, 2.0)
        model.fc_norm.bias.uniform_(-1, 1)
    encoder = load_encoder(f"hf:{_save(model, tmp_path / 'm')}", device="cpu")
    assert encoder.describe()["pooling"] == "mean_fc_norm"
    clips = _clips()
    pixels = _reference_pixels(clips, 4, (32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        tokens = model.videomae(pixel_values=pixels).last_hidden_state
        expected = model.fc_norm(tokens.mean(1)).numpy()
    np.testing.assert_allclose(encoder.encode(clips), expected, atol=1e-4)


def test_timesformer_pools_by_cls_token(tmp_path):
    model = _timesformer().eval()
    directory = _save(model, tmp_path / "m")
    # a preprocessor config next to the weights decides the normalisation
    (directory / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    encoder = load_encoder(f"hf:{directory}", device="cpu")
    clips = _clips()
    pixels = _reference_pixels(clips, 4, (32, 32), (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        expected = model(pixel_values=pixels).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(encoder.encode(clips), expected, atol=1e-5)


def test_vjepa2_pools_mean_of_encoder_tokens_and_keeps_clip_length(tmp_path):
    model = _vjepa2().eval()
    encoder = load_encoder(f"hf:{_save(model, tmp_path / 'm')}", device="cpu")
    clips = _clips(frames=6)
    assert encoder.frames_for(6) == 6 and encoder.frames_for(16) == 8 and encoder.frames_for(5) == 4
    pixels = _reference_pixels(clips, 6, (32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        expected = model(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state.mean(1).numpy()
    np.testing.assert_allclose(encoder.encode(clips), expected, atol=1e-5)


def test_missing_directory_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_encoder(f"hf:{tmp_path / 'nowhere'}")


def test_directory_without_weights_is_a_model_error(tmp_path):
    directory = tmp_path / "m"
    _videomae().config.save_pretrained(str(directory))
    with pytest.raises(ModelError, match="no weights"):
        load_encoder(f"hf:{directory}")


def test_unknown_model_type_is_a_model_error(tmp_path):
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    transformers.BertModel(config).save_pretrained(str(tmp_path / "bert"))
    with pytest.raises(ModelError, match="model_type 'bert' is not a supported video encoder"):
        load_encoder(f"hf:{tmp_path / 'bert'}")


def test_unknown_spec_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="unknown encoder"):
        load_encoder("resnet50")
    with pytest.raises(ModelError, match="names no directory"):
        load_encoder("hf:")


def test_sizes_the_encoder_cannot_take_are_model_errors(tmp_path):
    directory = _save(_videomae(), tmp_path / "m")
    encoder = load_encoder(f"hf:{directory}", device="cpu")
    with pytest.raises(ModelError, match="must be"):
        encoder.encode(np.zeros((2, 16, 32, 32), np.uint8))  # no channel axis
    with pytest.raises(ModelError, match="uint8"):
        encoder.encode(np.zeros((2, 16, 32, 32, 3), np.float32))
    with pytest.raises(ModelError, match="no empty axis"):
        encoder.encode(np.zeros((2, 0, 32, 32, 3), np.uint8))
    config = json.loads((directory / "config.json").read_text())
    config["num_frames"] = 5  # not a multiple of the tubelet (2)
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="cannot take"):
        load_encoder(f"hf:{directory}")


def test_pretrain_stage_records_a_hf_encoder_that_extraction_then_loads(tmp_path):
    from latentanon.data.config import DataConfig
    from latentanon.encoders.config import PretrainConfig
    from latentanon.encoders.pretrain import pretrain_encoder

    directory = _save(_videomae(), tmp_path / "videomae")
    cfg = PretrainConfig(encoder=f"hf:{directory}", probe=False)
    summary = pretrain_encoder(
        cfg, DataConfig(), tmp_path / "manifests", tmp_path / "data", tmp_path / "encoder", tmp_path / "reports"
    )
    assert summary["trained"] is False and summary["encoder"].startswith("hf:videomae:")
    encoder = load_encoder(tmp_path / "encoder", device="cpu")  # what extract does with the encoder dir
    assert encoder.identity == summary["encoder"]
    assert encoder.encode(_clips(n=1)).shape == (1, 32)
