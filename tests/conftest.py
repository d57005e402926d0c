"""Shared test set-up: offline, no cloud probes, one thread per test process."""

from __future__ import annotations

import os

import pytest

os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: the stages a test starts as subprocesses (dvc, kfp
    # local) then take one core each instead of oversubscribing the machine
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)


# The files that take longest (worker-seconds of a full run, longest first): `make test` hands
# them out first (--no-loadscope-reorder keeps this order) so the workers finish together instead
# of one starting a four-minute pipeline test after the other has run out of files.
LONGEST_FILES = (
    "test_resume.py",
    "test_dvc_pipeline.py",
    "test_readme_commands.py",
    "test_kfp_local.py",
    "test_bias.py",
    "test_hf_pipeline.py",
    "test_k8s.py",
    "test_pipeline_compile.py",
    "test_tuning.py",
    "test_validation.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests use tiny tensors: one thread is faster and never oversubscribes the CI machine. Reset
    for every test, in case the one before changed it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Each test gets its own MLflow store unless it sets one itself."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
