"""Pipeline runs, the pyfunc adapter model and ``anonymize_with_registered_model`` (sqlite store)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from latentanon.config import Layout, params_from_dict
from latentanon.errors import ModelError
from latentanon.features.featureset import FeatureSet
from latentanon.tracking import gate, registry, runs
from test_gate import GOOD, TEST_ENCODER, save_random_adapter, write_metrics


def params_for(workdir, **tracking):
    return params_from_dict({"paths": {"workdir": str(workdir)}, "tracking": tracking})


def random_store(uri, dim: int = 16, n: int = 6, seed: int = 0, encoder: str = TEST_ENCODER) -> FeatureSet:
    from latentanon.features.store import write_feature_set

    rng = np.random.default_rng(seed)
    records = pd.DataFrame(
        {
            "video_id": [f"v{i}" for i in range(n)],
            "split": ["train", "val", "test"] * (n // 3),
            "label_id": list(range(n)),
        }
    )
    fs = FeatureSet(
        "privacy_videos",
        records,
        {
            "clips": [rng.normal(size=(int(rng.integers(1, 4)), dim)).astype(np.float32) for _ in range(n)],
            "static": [rng.normal(size=(2, dim)).astype(np.float32) for _ in range(n)],
        },
    )
    from latentanon.features.store import FeatureStore

    write_feature_set(str(uri), fs)
    FeatureStore(str(uri)).write_index({"encoder": {"identity": encoder}})
    return fs


# ----------------------------------------------------------------------------- pipeline runs


@pytest.mark.slow
def test_stages_share_one_parent_run_until_the_gate_closes_it(tmp_path):
    params = params_for(tmp_path)
    layout = Layout.from_params(params)
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  generate:\n    outs:\n    - path: data/benchmark\n      md5: abc123.dir\n"
        "  validate:\n    outs:\n    - path: data/manifests\n      md5: def456.dir\n"
    )
    plot = tmp_path / "reports" / "validate" / "summary.md"
    plot.parent.mkdir(parents=True)
    plot.write_text("# fine\n")
    first = runs.log_stage(
        params.tracked(), layout, "generate", {"videos": 12, "nested": {"seconds": 1.5}, "name": "x"}, []
    )
    second = runs.log_stage(params.tracked(), layout, "validate", {"quarantined": 0}, [plot, tmp_path / "absent.png"])
    assert first == second
    client = mlflow.MlflowClient()
    run = client.get_run(first)
    assert run.data.metrics["generate.videos"] == 12 and run.data.metrics["generate.nested.seconds"] == 1.5
    assert run.data.params["tune.n_trials"] == str(params.tune.n_trials)
    assert run.data.tags[runs.TAG_PIPELINE] == "true" and run.data.tags[runs.TAG_STATE] == "open"
    # dvc.lock: upstream stages' hashes (the running stage's own entry is stale and left out)
    assert run.data.tags["dvc.generate.data/benchmark"] == "abc123.dir"
    assert "dvc.validate.data/manifests" not in run.data.tags
    logged = {a.path for a in client.list_artifacts(first, "validate")}
    assert {"validate/summary.md", "validate/summary.json", "validate/dvc.lock"} <= logged

    runs.log_stage(params.tracked(), layout, "gate", {"decision": "rejected"}, [])
    closed = client.get_run(first)
    assert closed.data.tags[runs.TAG_STATE] == "complete" and closed.info.status == "FINISHED"
    # the next pipeline invocation gets a new parent run
    assert runs.log_stage(params.tracked(), layout, "generate", {}, []) != first
    # so does one with different params
    again = runs.pipeline_run_id(params.tracked(), layout)
    assert (
        runs.pipeline_run_id(
            params_from_dict({"paths": {"workdir": str(tmp_path)}, "tune": {"n_trials": 99}}).tracked(), layout
        )
        != again
    )


def test_kubeflow_injected_run_is_the_parent_and_stays_open(tmp_path, monkeypatch):
    params = params_for(tmp_path)
    layout = Layout.from_params(params)
    client = runs.client_for(params.tracking, layout)
    injected = client.create_run(runs.experiment_id(client, "kfp")).info.run_id
    monkeypatch.setenv(runs.RUN_ID_ENV, injected)
    assert runs.log_stage(params.tracked(), layout, "gate", {"x": 1.0}, []) == injected
    run = client.get_run(injected)
    assert run.data.metrics["gate.x"] == 1.0 and run.info.status == "RUNNING"
    assert not (tmp_path / "reports" / "tracking" / "pipeline_run.json").exists()


def test_tracking_uri_resolution_and_unreachable_store(tmp_path, monkeypatch):
    params = params_for(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert (
        runs.resolve_tracking_uri(params.tracking, Layout.from_params(params))
        == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert runs.resolve_tracking_uri(params.tracking, Layout.from_params(params)) == "http://127.0.0.1:9"
    explicit = params_for(tmp_path, tracking_uri="http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(runs.TrackingError, match="127.0.0.1:9"):
        runs.log_stage(explicit.tracked(), Layout.from_params(explicit), "generate", {}, [])


def test_metric_flattening_keeps_finite_numbers_only():
    metrics = runs.numeric_metrics(
        {"a": 1, "b": {"c": 2.5, "d": float("nan"), "e": True, "f": "x"}, "g": [1, 2], "h": [{"i": 3}], "bad:key": 4},
        "s",
    )
    assert metrics == {"s.a": 1.0, "s.b.c": 2.5, "s.h.0.i": 3.0, "s.bad_key": 4.0}


# ----------------------------------------------------------------------------- model and registry


def test_model_uri_parsing():
    assert registry.parse_model_uri("models:/latentanon-aam@champion") == ("latentanon-aam", "champion", None)
    assert registry.parse_model_uri("models:/latentanon-aam/3") == ("latentanon-aam", None, "3")
    for bad in ("runs:/abc/aam", "models:/x", "latentanon-aam@champion", "models:/a/b/c"):
        with pytest.raises(ModelError):
            registry.parse_model_uri(bad)


@pytest.mark.slow
def test_registered_model_predicts_like_the_adapter_and_needs_approval(tmp_path, monkeypatch):
    from latentanon.features.store import load_feature_set
    from latentanon.methods.apply import anonymize_store

    params = params_for(tmp_path)
    layout = Layout.from_params(params)
    model = save_random_adapter(layout.method_dir, seed=7)
    (layout.method_dir / "heads.safetensors").write_bytes(b"not part of the registered model")
    registered = registry.register_candidate(params.tracked(), layout)
    name, version = registered["model_name"], registered["version"]

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@candidate")
    sequence = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(sequence)).numpy()
    np.testing.assert_array_equal(loaded.predict(sequence), expected)
    assert loaded.metadata.get_input_schema().inputs[0].shape == (-1, 16)
    packed = loaded.unwrap_python_model().method_dir
    assert sorted(p.name for p in packed.iterdir()) == ["adapter.safetensors", "config.json"]
    with pytest.raises(ModelError, match=r"\(T, 16\)"):
        loaded.unwrap_python_model().predict(None, np.zeros((2, 8), np.float32))

    source = tmp_path / "features"
    random_store(source)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="not approved"):
        registry.anonymize_with_registered_model(f"models:/{name}@candidate", str(source), str(tmp_path / "out"))
    with pytest.raises(ModelError, match="not found.*only after the gate approved"):
        registry.anonymize_with_registered_model(f"models:/{name}@champion", str(source), str(tmp_path / "out"))

    write_metrics(layout, GOOD)
    assert gate.run_gate(params.tracked(), layout)["promoted"]
    summary = registry.anonymize_with_registered_model(f"models:/{name}@champion", str(source), str(tmp_path / "out"))
    assert summary["version"] == version
    anonymize_store(layout.method_dir, str(source), str(tmp_path / "in_process"))
    ours = load_feature_set(str(tmp_path / "out"), "privacy_videos")
    reference = load_feature_set(str(tmp_path / "in_process"), "privacy_videos")
    for kind in ("clips", "static"):
        for a, b in zip(ours.kind(kind), reference.kind(kind)):
            np.testing.assert_array_equal(a, b)
    assert json.loads(json.dumps(summary, default=str))["model_name"] == name
    # MLflow's process-wide URI is left alone: the next user of the environment is not misled
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'elsewhere.db'}"


@pytest.mark.parametrize("method_name", ["noise@0.5", "leace"])
def test_any_method_registers_as_a_pyfunc_with_a_signature(tmp_path, method_name):
    """The registry and the pyfunc carry whatever the train stage saved, not only the AAM."""
    from latentanon.methods.registry import create_method
    from test_tuning import make_feature_sets

    params = params_for(tmp_path)
    layout = Layout.from_params(params)
    sets = make_feature_sets(dim=16, per_split={"train": 8, "val": 4, "test": 4})
    method = create_method(method_name).fit(sets, seed=3)
    method.save(layout.method_dir)
    registered = registry.register_candidate(params.tracked(), layout)
    loaded = mlflow.pyfunc.load_model(f"models:/{registered['model_name']}/{registered['version']}")
    assert loaded.metadata.get_input_schema().inputs[0].shape == (-1, 16)
    packed = loaded.unwrap_python_model().method_dir
    assert sorted(p.name for p in packed.iterdir()) == ["method.json", "method.safetensors"]
    sequence = sets["actions"].kind("clips")[0]
    expected, predicted = method.transform_sequence(sequence), loaded.predict(sequence)
    if method.stochastic:
        # fresh OS noise on every call: never the same draw, and on a long input the draw's spread
        # per dimension is the fitted sigma (2000 rows put the estimate within ~2%; rtol 0.15 cannot flake)
        assert predicted.shape == expected.shape and not np.allclose(predicted, expected)
        long = np.tile(sequence, (-(-2000 // len(sequence)), 1))
        np.testing.assert_allclose((loaded.predict(long) - long).std(axis=0), method.sigma, rtol=0.15)
    else:
        np.testing.assert_allclose(predicted, expected, rtol=1e-6)
    # the same files register once
    assert registry.register_candidate(params.tracked(), layout)["reused"]
