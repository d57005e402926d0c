"""Against a real ``mlflow server`` on 127.0.0.1: trial runs nest under the pipeline run, the gate
promotes only a passing candidate, and the champion loaded from the server anonymizes exactly like
the in-process adapter."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from latentanon.config import Layout, params_from_dict
from latentanon.features.store import FeatureStore
from latentanon.tracking import gate, registry
from latentanon.tuning import search
from test_gate import GOOD, TEST_ENCODER, aliases, save_random_adapter, with_value, write_metrics
from test_tuning import make_feature_sets, write_store

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 (the server writes it until the fixture's teardown)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(tmp_path / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not answer /health within 180 s")
            time.sleep(0.5)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own session: it and its workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_pipeline_runs_and_gated_registry_on_a_server(mlflow_server, tmp_path, monkeypatch):
    params = params_from_dict(
        {
            "paths": {"workdir": str(tmp_path / "work")},
            "tune": {"n_trials": 2, "epochs_per_trial": 1},
            "train": {"adapter": {"blocks": 1, "heads": 2}, "batch_size": 32, "lr": 1e-3},
        }
    )
    layout = Layout.from_params(params)
    write_store(layout.features_uri, make_feature_sets())
    # the encoder the gate measured (train's summary, written by write_metrics): publish checks it
    FeatureStore(layout.features_uri).write_index({"encoder": {"identity": TEST_ENCODER}})
    client = mlflow.MlflowClient()
    name = params.tracking.model_name

    # runs: the tune stage's trials are nested runs of the pipeline run, on the server
    summary = search.run_search(params.for_search(), params.tracked(), layout)
    parent_id = json.loads((layout.reports / "tracking" / "pipeline_run.json").read_text())["run_id"]
    parent = client.get_run(parent_id)
    assert parent.data.tags["latentanon.pipeline_run"] == "true"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == summary["trials_complete"] == 2
    assert all(c.info.status == "FINISHED" and "leakage" in c.data.metrics for c in children)

    # a candidate failing one threshold is registered but not promoted
    save_random_adapter(layout.method_dir, seed=11)
    write_metrics(layout, with_value(GOOD, "privacy.trained.relative_cmap_drop", 0.1))
    rejected = gate.run_gate(params.tracked(), layout)
    assert rejected["decision"] == "rejected"
    assert aliases(client, name) == {"candidate": str(rejected["version"])}  # no @champion

    # a passing one is promoted
    champion = save_random_adapter(layout.method_dir, seed=12)
    write_metrics(layout, GOOD)
    passed = gate.run_gate(params.tracked(), layout)
    assert passed["decision"] == "approved" and aliases(client, name) == {"champion": passed["version"]}

    # the champion is not replaced by a leakier candidate that meets every threshold
    save_random_adapter(layout.method_dir, seed=13)
    write_metrics(layout, with_value(GOOD, "privacy.trained.normalized_leakage", 0.39))
    leakier = gate.run_gate(params.tracked(), layout)
    assert leakier["decision"] == "rejected"
    assert aliases(client, name) == {"champion": passed["version"], "candidate": str(leakier["version"])}
    assert (layout.report_dir("gate") / "decision.json").exists()
    assert "gate/decision.json" in {a.path for a in client.list_artifacts(parent_id, "gate")}

    # the champion, loaded from the server, maps features exactly like the in-process adapter
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    sequence = np.random.default_rng(1).normal(size=(7, 16)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.predict(sequence), champion(torch.from_numpy(sequence)).numpy())

    from latentanon.features.store import load_feature_set
    from latentanon.methods.apply import anonymize_feature_set

    out = tmp_path / "shared"
    registry.anonymize_with_registered_model(f"models:/{name}@champion", layout.features_uri, str(out))
    for set_name in ("actions", "privacy_videos"):
        ours = load_feature_set(str(out), set_name)
        reference = anonymize_feature_set(champion, load_feature_set(layout.features_uri, set_name))
        for kind in reference.arrays:
            for a, b in zip(ours.kind(kind), reference.kind(kind)):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
