"""The AAM: batch invariance, exact identity at init, shapes, save/load, width errors."""

from __future__ import annotations

import json

import pytest
import torch

from latentanon.errors import ModelError
from latentanon.methods.aam import AAM, load_adapter, save_adapter
from latentanon.methods.config import AdapterConfig

DIM = 16


def _trained_like(config: AdapterConfig = AdapterConfig(blocks=2, heads=4)) -> AAM:
    """An AAM whose residual branches are non-zero, as after training (outputs of order 1, so
    1e-6 is well above float32 rounding)."""
    torch.manual_seed(0)
    model = AAM(DIM, config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _batch(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    t_max = max(s.shape[0] for s in sequences)
    x = torch.zeros(len(sequences), t_max, DIM)
    mask = torch.zeros(len(sequences), t_max, dtype=torch.bool)
    for i, s in enumerate(sequences):
        x[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return x, mask


@torch.no_grad()
def test_a_clip_output_does_not_depend_on_the_other_videos_in_the_batch():
    model = _trained_like()
    gen = torch.Generator().manual_seed(1)
    video = torch.randn(3, DIM, generator=gen)
    alone = model(*_batch([video]))[0]
    neighbours_a = [torch.randn(7, DIM, generator=gen), torch.randn(1, DIM, generator=gen)]
    neighbours_b = [torch.randn(n, DIM, generator=gen) * 5 for n in (2, 9, 4, 5, 3)]
    in_small = model(*_batch([neighbours_a[0], video, neighbours_a[1]]))[1]
    in_large = model(*_batch(neighbours_b + [video]))[-1]
    assert alone.shape == (3, DIM)
    assert torch.allclose(in_small[:3], alone, atol=1e-6, rtol=0)
    assert torch.allclose(in_large[:3], alone, atol=1e-6, rtol=0)
    # the padded tail of the video's row is zero, not leaked content
    assert torch.count_nonzero(in_large[3:]) == 0
    # and the module is not trivially constant: the video's own clips do interact
    changed = video.clone()
    changed[2] += 1.0
    assert not torch.allclose(model(*_batch([changed]))[0][0], alone[0], atol=1e-4)


def test_exact_identity_at_initialisation():
    model = AAM(DIM, AdapterConfig(blocks=3, heads=8, mlp=True))
    x, mask = _batch([torch.randn(4, DIM), torch.randn(2, DIM)])
    out = model(x, mask)
    assert torch.equal(out, x)
    single = torch.randn(5, DIM)
    assert torch.equal(model(single), single)


@pytest.mark.parametrize("mlp", [True, False])
def test_shape_is_preserved(mlp):
    model = _trained_like(AdapterConfig(blocks=1, heads=2, mlp=mlp))
    assert model(torch.randn(3, 6, DIM)).shape == (3, 6, DIM)
    assert model(torch.randn(6, DIM)).shape == (6, DIM)
    assert model(torch.randn(5, 1, DIM)).shape == (5, 1, DIM)


def test_save_load_round_trip(tmp_path):
    model = _trained_like(AdapterConfig(blocks=2, heads=2, mlp=True, mlp_ratio=1.5))
    save_adapter(model, tmp_path / "aam", extra={"weights": {"privacy": 2.0}})
    loaded = load_adapter(tmp_path / "aam")
    assert loaded.config == model.config and loaded.dim == DIM
    x, mask = _batch([torch.randn(4, DIM), torch.randn(2, DIM)])
    with torch.no_grad():
        assert torch.equal(loaded(x, mask), model(x, mask))
    assert json.loads((tmp_path / "aam" / "config.json").read_text())["weights"] == {"privacy": 2.0}


def test_bad_width_and_bad_files_raise_model_errors(tmp_path):
    model = AAM(DIM, AdapterConfig(blocks=1, heads=2))
    with pytest.raises(ModelError, match="width 16"):
        model(torch.randn(2, 3, DIM + 1))
    with pytest.raises(ModelError, match="not divisible"):
        AAM(10, AdapterConfig(heads=4))
    with pytest.raises(ModelError, match="adapter file missing"):
        load_adapter(tmp_path / "nothing")
    save_adapter(model, tmp_path / "aam")
    config = json.loads((tmp_path / "aam" / "config.json").read_text())
    config["dim"] = DIM * 2
    (tmp_path / "aam" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="does not match"):
        load_adapter(tmp_path / "aam")
