"""Device resolution: ``auto`` may fall back to the CPU, an explicit ``cuda`` never does (a GPU task
on a node or image without CUDA must stop with a clear error, not hold the GPU and run on the CPU)."""

from __future__ import annotations

import pytest
import torch

from latentanon.encoders.base import resolve_device
from latentanon.errors import ModelError
from latentanon.methods.training import resolve_device as resolve_train_device


def test_auto_and_cpu_resolve_where_there_is_no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_train_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("requested", ["cuda", "cuda:0"])
def test_explicit_cuda_without_a_gpu_fails_with_a_clear_error(monkeypatch, requested):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match=r"extract\.device: .*torch\.cuda\.is_available\(\) is False.*CUDA variant"):
        resolve_device(requested, setting="extract.device")
    with pytest.raises(ModelError, match=r"train\.device: .*torch\.cuda\.is_available\(\) is False"):
        resolve_train_device(requested)


def test_explicit_cuda_with_a_gpu_is_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_train_device("cuda:1") == torch.device("cuda:1")


def test_not_a_device_names_the_setting():
    with pytest.raises(ModelError, match="train.device: 'gpu' is not a torch device"):
        resolve_train_device("gpu")
