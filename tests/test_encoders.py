"""The built-in encoder: architecture, frozen files with an identity, pretraining stage and its probe."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from latentanon.data.config import DataConfig
from latentanon.encoders.builtin import BuiltinConfig, VideoEncoder
from latentanon.encoders.builtin_files import load_builtin, save_builtin
from latentanon.encoders.builtin_training import appearance_labels, make_static
from latentanon.encoders.config import PretrainConfig
from latentanon.encoders.loading import load_encoder
from latentanon.encoders.masked_pretrainer import MaskedVideoPretrainer, patchify, reconstruction_targets, tube_mask
from latentanon.encoders.pretrain import pretrain_encoder
from latentanon.errors import DataError, ModelError
from test_extraction import make_benchmark

SMALL = BuiltinConfig(dim=16, depth=1, heads=2, tubelet=2, patch=8, frames=16, height=32, width=32, num_classes=3)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_encoder_pools_tokens_to_one_vector(positions):
    encoder = VideoEncoder(replace(SMALL, positions=positions)).eval()
    video = torch.rand(3, 3, 16, 32, 32)
    tokens = encoder.tokens(video)
    assert tokens.shape == (3, 8 * 4 * 4, 16)
    torch.testing.assert_close(encoder(video), tokens.mean(1))
    # batch invariance: a clip's feature does not depend on its batch mates
    torch.testing.assert_close(encoder(video[1:2]), encoder(video)[1:2], atol=1e-5, rtol=1e-5)


def test_geometry_the_tubelets_cannot_tile_is_a_model_error():
    with pytest.raises(ModelError, match="not divisible by patch"):
        VideoEncoder(replace(SMALL, height=30))
    with pytest.raises(ModelError, match="not divisible by tubelet"):
        VideoEncoder(replace(SMALL, frames=15))
    with pytest.raises(ModelError, match="not divisible by heads"):
        VideoEncoder(replace(SMALL, dim=15))
    with pytest.raises(ModelError, match="takes"):
        VideoEncoder(SMALL)(torch.rand(1, 3, 8, 32, 32))


def test_tube_mask_hides_the_same_patches_at_every_time():
    keep, hidden = tube_mask(4, SMALL, 0.75, torch.Generator().manual_seed(0))
    assert keep.shape == (4, 8 * 4) and hidden.shape == (4, 8 * 12)
    for b in range(4):
        assert set(keep[b].tolist()).isdisjoint(hidden[b].tolist())
        spatial = [set((keep[b][keep[b] // 16 == t] % 16).tolist()) for t in range(8)]
        assert all(s == spatial[0] for s in spatial)


def test_patchify_follows_the_token_order():
    encoder = VideoEncoder(SMALL)
    video = torch.rand(2, 3, 16, 32, 32)
    with torch.no_grad():
        weight = encoder.embed.weight.reshape(16, -1)  # (dim, 3*t*p*p) in (c, t, y, x) order
        tokens = encoder.embed(video).flatten(2).transpose(1, 2)
        patches = patchify(video, SMALL)  # (B, N, t*p*p*3)  in (t, y, x, c) order
        reordered = patches.reshape(2, 128, 2, 8, 8, 3).permute(0, 1, 5, 2, 3, 4).reshape(2, 128, -1)
        torch.testing.assert_close(reordered @ weight.T + encoder.embed.bias, tokens, atol=1e-5, rtol=1e-5)


def test_pretrainer_losses_train():
    torch.manual_seed(0)
    model = MaskedVideoPretrainer(SMALL)
    video = torch.rand(4, 3, 16, 32, 32)
    labels = torch.tensor([0, 1, 2, 0])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(15):
        keep, hidden = tube_mask(4, SMALL, 0.75, gen)
        loss = model.reconstruction_loss(video, keep, hidden) + torch.nn.functional.cross_entropy(
            model.logits(video), labels
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_saved_encoder_is_frozen_and_identified(tmp_path):
    encoder = VideoEncoder(SMALL).eval()
    identity = save_builtin(encoder, tmp_path / "enc")
    assert identity.startswith("builtin:")
    loaded, meta = load_builtin(tmp_path / "enc")
    assert meta["identity"] == identity and not any(p.requires_grad for p in loaded.parameters())
    clip_encoder = load_encoder("builtin", tmp_path / "enc", device="cpu")
    assert (clip_encoder.dim, clip_encoder.clip_frames, clip_encoder.identity) == (16, 16, identity)
    clips = np.random.default_rng(0).integers(0, 256, (2, 16, 32, 32, 3), dtype=np.uint8)
    expected = encoder(torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 255).detach().numpy()
    np.testing.assert_allclose(clip_encoder.encode(clips), expected, atol=1e-5)
    # other clip sizes are resampled to the encoder's frames and frame size
    assert clip_encoder.encode(np.zeros((1, 20, 48, 40, 3), np.uint8)).shape == (1, 16)
    assert load_encoder(tmp_path / "enc", device="cpu").identity == identity


def test_tampered_or_missing_files_are_model_errors(tmp_path):
    save_builtin(VideoEncoder(SMALL), tmp_path / "enc")
    weights = load_file(str(tmp_path / "enc" / "model.safetensors"))
    weights["norm.weight"] = weights["norm.weight"] + 1
    save_file(weights, str(tmp_path / "enc" / "model.safetensors"))
    with pytest.raises(ModelError, match="do not match the identity"):
        load_builtin(tmp_path / "enc")
    with pytest.raises(ModelError, match="directory not found"):
        load_encoder("builtin", tmp_path / "nowhere")
    (tmp_path / "enc" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="file missing"):
        load_builtin(tmp_path / "enc")


@pytest.fixture(scope="module")
def pretrain_bench(tmp_path_factory):
    base = tmp_path_factory.mktemp("pretrain")
    make_benchmark(
        base / "data", base / "manifests", sets=("pretrain", "actions", "privacy_videos"), videos_per_identity=6
    )
    return base


@pytest.mark.slow
def test_pretrain_stage_saves_the_encoder_and_probes_it(pretrain_bench, tmp_path):
    cfg = PretrainConfig(
        dim=32, depth=1, heads=2, patch=8, epochs=6, batch_size=16, lr=2e-3, device="cpu", probe_clips_per_video=2
    )
    data_cfg = DataConfig(height=32, width=32, clip_frames=16)
    out, reports = tmp_path / "encoder", tmp_path / "reports"
    summary = pretrain_encoder(cfg, data_cfg, pretrain_bench / "manifests", pretrain_bench / "data", out, reports)
    assert summary["trained"] and (out / "model.safetensors").exists()
    meta = json.loads((out / "config.json").read_text())
    assert meta["identity"] == summary["encoder"] and meta["architecture"]["num_classes"] == 3
    assert (reports / "loss_curve.png").stat().st_size > 1000
    history = json.loads((reports / "history.json").read_text())["history"]
    assert len(history) == 6 and history[-1]["reconstruction"] < history[0]["reconstruction"]
    probe = json.loads((reports / "probe.json").read_text())
    assert probe["encoder"] == summary["encoder"]
    assert 0.0 <= probe["action_probe"]["top1"] <= 1.0
    low, high = probe["action_probe"]["top1_interval"]
    assert 0.0 <= low <= probe["action_probe"]["top1"] <= high <= 1.0
    # colour (skin_tone) fills a large square in every frame: the attacker must find it far above chance
    skin = probe["attribute_attack_static"]["skin_tone"]
    assert skin["cmap"] > skin["chance_cmap"] + 0.3
    # a re-run with the same training inputs keeps the trained encoder (probe settings do not matter)
    rerun = pretrain_encoder(
        replace(cfg, probe=False), data_cfg, pretrain_bench / "manifests", pretrain_bench / "data", out, reports
    )
    assert rerun["reused"] and not rerun["trained"] and rerun["encoder"] == summary["encoder"]


def test_pretrain_errors_name_the_problem(tmp_path):
    cfg = PretrainConfig(dim=16, depth=1, heads=2, epochs=1, probe=False)
    with pytest.raises(DataError, match="pretrain.csv"):
        pretrain_encoder(cfg, DataConfig(), tmp_path / "manifests", tmp_path, tmp_path / "enc", tmp_path / "rep")
    with pytest.raises(ModelError, match="unknown encoder"):
        pretrain_encoder(
            replace(cfg, encoder="resnet"), DataConfig(), tmp_path, tmp_path, tmp_path / "e", tmp_path / "r"
        )


def test_conv_stem_and_difference_inputs_keep_the_token_grid():
    config = replace(SMALL, stem="conv", stem_width=4, inputs="rgb+diff")
    encoder = VideoEncoder(config).eval()
    video = torch.rand(2, 3, 16, 32, 32)
    assert encoder.tokens(video).shape == (2, 128, 16)
    # a static clip has zero frame differences: hiding its frames leaves only constant inputs
    static = video[:, :, :1].expand(-1, -1, 16, -1, -1)
    hidden = encoder.tokens(static, rgb_scale=torch.zeros(2))
    torch.testing.assert_close(hidden[0], hidden[1])
    assert not torch.allclose(encoder.tokens(static)[0], encoder.tokens(static)[1])
    with pytest.raises(ModelError, match="inputs"):
        VideoEncoder(replace(SMALL, inputs="flow"))
    with pytest.raises(ModelError, match="conv stem"):
        VideoEncoder(replace(SMALL, stem="conv", patch=6, height=36, width=36))


def test_two_stream_pathways_split_appearance_from_motion():
    config = replace(SMALL, stem="conv", stem_width=4, inputs="rgb+diff", pathways="two_stream", dim=16, heads=2)
    encoder = VideoEncoder(config).eval()
    video = torch.rand(2, 3, 16, 32, 32)
    tokens = encoder.tokens(video)
    assert tokens.shape == (2, 128, 16) and encoder(video).shape == (2, 16)
    # the first half of each token reads only the frames, the second only their differences
    brighter = (video + 0.1).clamp(0, 1)
    static = video[:, :, :1].expand(-1, -1, 16, -1, -1)
    motion_of_still = encoder.tokens(static)[..., 8:]
    torch.testing.assert_close(motion_of_still[0], motion_of_still[1])  # no motion, same motion code
    assert not torch.allclose(encoder.tokens(static)[0, :, :8], encoder.tokens(static)[1, :, :8])
    hidden = encoder.tokens(video, rgb_scale=torch.zeros(2))[..., :8]
    torch.testing.assert_close(hidden[0], hidden[1])  # hidden frames: no appearance
    assert not torch.allclose(encoder.tokens(brighter)[..., :8], tokens[..., :8])
    keep = torch.tensor([[0, 5, 9], [1, 2, 127]])
    assert encoder.tokens(video, keep).shape == (2, 3, 16)
    # both pathways train: reconstruction and the heads reach every parameter of each pathway
    model = MaskedVideoPretrainer(replace(config, num_classes=3, attribute_classes=(4,)))
    keep, hidden = tube_mask(2, model.config, 0.75, torch.Generator().manual_seed(0))
    action, attributes = model.heads(video)
    (model.reconstruction_loss(video, keep, hidden) + action.sum() + attributes[0].sum()).backward()
    for pathway in (model.encoder.appearance, model.encoder.motion):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pathway.parameters())
    with pytest.raises(ModelError, match="two_stream"):
        VideoEncoder(replace(config, inputs="rgb"))
    with pytest.raises(ModelError, match="pathways"):
        VideoEncoder(replace(config, pathways="three"))


@pytest.mark.parametrize("pathways", ["joint", "two_stream"])
def test_one_shared_embedding_gives_the_same_step_as_two_passes(pathways):
    config = replace(
        SMALL,
        stem="conv",
        stem_width=4,
        inputs="rgb+diff",
        pathways=pathways,
        dim=16,
        heads=2,
        num_classes=3,
        attribute_classes=(4, 2),
    )
    video = torch.rand(3, 3, 16, 32, 32)
    keep, hidden = tube_mask(3, config, 0.75, torch.Generator().manual_seed(1))
    grads, outputs = [], []
    for shared in (False, True):
        torch.manual_seed(0)
        model = MaskedVideoPretrainer(config)
        if shared:
            recon, action, attributes = model.training_outputs(video, keep, hidden)
        else:
            recon = model.reconstruction_loss(video, keep, hidden)
            action, attributes = model.heads(video)
        (recon + action.square().sum() + sum(a.square().sum() for a in attributes)).backward()
        outputs.append((recon.detach(), action.detach(), [a.detach() for a in attributes]))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    # with part of the clips' frames hidden from the heads the two passes see different inputs
    torch.manual_seed(0)
    model = MaskedVideoPretrainer(config)
    scale = torch.tensor([1.0, 0.0, 1.0])
    _, action, _ = model.training_outputs(video, keep, hidden, scale)
    torch.testing.assert_close(action, model.heads(video, scale)[0])


def test_pixel_targets_keep_the_brightness_that_per_tubelet_normalisation_drops():
    """A foundation-like encoder must reconstruct appearance: a light and a dark flat clip (as light
    and dark skin differ) need different pixel targets; VideoMAE's per-tubelet normalisation makes
    them identical."""
    texture = 0.2 * torch.rand(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    light, dark = texture + 0.7, texture + 0.1
    pixels = replace(SMALL, target="pixels")
    assert reconstruction_targets(light, pixels).shape == (2, 128, 3 * 2 * 8 * 8)
    assert (reconstruction_targets(light, pixels) - reconstruction_targets(dark, pixels)).abs().min() > 1.0
    norm = replace(SMALL, target="patch_norm")
    torch.testing.assert_close(
        reconstruction_targets(light, norm), reconstruction_targets(dark, norm), atol=1e-3, rtol=1e-3
    )
    with pytest.raises(ModelError, match="target"):
        VideoEncoder(replace(SMALL, target="depth"))
    # the default pretraining hides nothing from the action head and reconstructs colour
    assert PretrainConfig().rgb_dropout == 0.0 and PretrainConfig().target == "pixels"


def test_appearance_heads_and_static_training_clips():
    model = MaskedVideoPretrainer(replace(SMALL, attribute_classes=(4, 2)))
    action, attributes = model.heads(torch.rand(3, 3, 16, 32, 32))
    assert action.shape == (3, 3) and [a.shape for a in attributes] == [(3, 4), (3, 2)]
    clips = torch.rand(64, 3, 16, 32, 32)
    before = clips.clone()
    still = make_static(clips, 0.5, np.random.default_rng(0))
    assert 16 < still.sum() < 48
    assert (clips[still] == clips[still][:, :, :1]).all()  # one frame, tiled
    torch.testing.assert_close(clips[~still], before[~still])  # the others untouched
    import pandas as pd

    manifest = pd.DataFrame({"skin_tone": [0, 3, None], "gender": [1, 0, 1], "label": ["a", "b", "a"]})
    labels = appearance_labels(manifest, PretrainConfig(appearance_attributes=("skin_tone", "gender", "face")))
    assert list(labels) == ["skin_tone", "gender"]  # no face column: no face head
    assert labels["skin_tone"].tolist() == [0, 3, -1]
    assert appearance_labels(manifest, PretrainConfig(appearance_weight=0.0)) == {}


def test_training_manifest_adds_only_train_rows_with_labels_matched_by_name(tmp_path):
    from latentanon.data.manifests import read_manifest
    from latentanon.encoders.pretrain import training_manifest

    base = tmp_path / "bench"
    make_benchmark(base / "data", base / "manifests", sets=("pretrain", "actions"), videos_per_identity=2)
    pretrain = read_manifest(base / "manifests", "pretrain")
    actions = read_manifest(base / "manifests", "actions")
    combined = training_manifest(pretrain, base / "manifests", ("actions",))
    assert len(combined) == len(pretrain) + int((actions["split"] == "train").sum())
    assert set(combined["path"]) - set(pretrain["path"]) == set(actions.loc[actions["split"] == "train", "path"])
    names = dict(zip(combined["label"], combined["label_id"]))
    assert len(names) == combined["label"].nunique() == combined["label_id"].nunique()
    assert all(names[n] == i for n, i in zip(pretrain["label"], pretrain["label_id"]))


def test_wilson_interval_matches_the_closed_form_and_stays_in_range():
    from latentanon.encoders.probe import wilson_interval

    low, high = wilson_interval(388, 576)  # 0.674 of 576 videos
    assert low == pytest.approx(0.6347, abs=1e-3) and high == pytest.approx(0.7104, abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson_interval(10, 10)[1] == pytest.approx(
        1.0
    )
    narrow, wide = wilson_interval(50, 100, 0.8), wilson_interval(50, 100, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


class _MeanEncoder:
    """Feature of a clip: its mean pixel per channel; records each batch's size."""

    def __init__(self):
        self.batches = []

    def encode(self, clips):
        self.batches.append(len(clips))
        return np.asarray(clips, dtype=np.float32).mean(axis=(1, 2, 3))


def test_probe_encodes_clips_of_several_videos_per_batch_and_keeps_each_videos_rows(monkeypatch, tmp_path):
    import pandas as pd

    from latentanon.encoders import probe

    frames = {
        f"v{i}.mp4": np.random.default_rng(i).integers(0, 255, size=(12 + i, 8, 8, 3), dtype=np.uint8) for i in range(7)
    }
    monkeypatch.setattr(probe, "decode", lambda path: frames[path.name])
    manifest = pd.DataFrame({"path": list(frames)})
    batched = _MeanEncoder()
    rows = probe.encode_videos(batched, manifest, tmp_path, "clips", clip_frames=4, per_video=2, batch_size=5)
    alone = _MeanEncoder()
    for name, got in zip(frames, rows):
        want = probe.encode_videos(alone, pd.DataFrame({"path": [name]}), tmp_path, "clips", 4, 2, batch_size=5)[0]
        np.testing.assert_array_equal(got, want)
        assert got.shape == (2, 3)
    assert batched.batches == [6, 6, 2]  # three videos' clips per pass, not one video's
    assert probe.encode_videos(batched, manifest.iloc[:0], tmp_path, "clips", 4, 2) == []


def test_read_ahead_keeps_order_and_holds_at_most_its_look_ahead():
    from latentanon.encoders.probe import _read_ahead

    started = []
    consumed = 0

    def work(x):
        started.append(x)
        assert len(started) - consumed <= 3  # never more than `ahead` results waiting
        return x * x

    out = []
    for value in _read_ahead(work, range(10), ahead=3):
        time.sleep(0.01)  # a slow consumer: the thread must wait, not run on
        out.append(value)
        consumed += 1
    assert out == [x * x for x in range(10)]
