"""`anonymize` runs nothing from the registry and only what the gate judged: planted pickles,
edited files, forged tags, metrics of another adapter and features of another encoder are
refused. Params reach MLflow redacted."""

from __future__ import annotations

import contextlib
import json
import pickle
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import pytest

from latentanon._redact import redact, redact_text
from latentanon.config import Layout
from latentanon.errors import ModelError
from latentanon.features import release
from latentanon.tracking import decision_record, gate, registry, runs
from latentanon.tracking.registry import APPROVED, REJECTED, TAG_DECISION
from test_gate import GOOD, save_random_adapter, write_metrics
from test_registry import params_for, random_store


class Payload:
    """Unpickling this writes ``marker``: the side effect a planted pickle would have."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('executed')",))


def approved_champion(tmp_path):
    params = params_for(tmp_path)
    layout = Layout.from_params(params)
    save_random_adapter(layout.method_dir, seed=7)
    write_metrics(layout, GOOD)
    summary = gate.run_gate(params.tracked(), layout)
    assert summary["decision"] == APPROVED and summary["promoted"]
    source = tmp_path / "features"
    random_store(source)
    return params, layout, summary["model_name"], summary["version"]


def model_dir(name: str, version: str) -> Path:
    uri = mlflow.MlflowClient().get_model_version_download_uri(name, version)
    return Path(unquote(urlparse(uri).path))


def anonymize(tmp_path, name: str, alias: str = "champion", source: str = "features", out: str = "out"):
    return registry.anonymize_with_registered_model(
        f"models:/{name}@{alias}", str(tmp_path / source), str(tmp_path / out)
    )


def test_a_planted_pickle_is_never_executed_and_an_unapproved_file_is_refused(tmp_path):
    _, _, name, version = approved_champion(tmp_path)
    marker = tmp_path / "pwned"
    folder = model_dir(name, version)
    (folder / "python_model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    summary = anonymize(tmp_path, name)  # the method's own files are intact: it runs
    assert summary["version"] == version and not marker.exists()

    (folder / "artifacts" / "adapter" / "extra.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelError, match=rf"version {version} of {name}: file 'extra.pkl' is not one of the approved"):
        anonymize(tmp_path, name, out="out2")
    (folder / "artifacts" / "adapter" / "extra.pkl").unlink()
    (folder / "artifacts" / "adapter" / "adapter.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelError, match=rf"version {version} of {name}: file 'adapter.safetensors' has sha256"):
        anonymize(tmp_path, name, out="out3")
    assert not marker.exists(), "nothing from the registry was unpickled"
    assert not (tmp_path / "out2" / "index.json").exists() and not (tmp_path / "out3" / "index.json").exists()

    # the plant is live: MLflow's own pyfunc loader does run it (what anonymize no longer calls)
    with contextlib.suppress(Exception):  # the payload returns no model; its side effect is the point
        mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    assert marker.exists()


def test_an_edited_safetensors_file_is_refused(tmp_path):
    _, _, name, version = approved_champion(tmp_path)
    weights = model_dir(name, version) / "artifacts" / "adapter" / "adapter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(
        ModelError,
        match=rf"version {version} of {name}: file 'adapter.safetensors' has sha256 .* "
        "the gate approved",
    ):
        anonymize(tmp_path, name)


def test_a_forged_gate_decision_tag_approves_nothing(tmp_path, monkeypatch):
    params, layout, name, version = approved_champion(tmp_path)
    client = mlflow.MlflowClient()
    save_random_adapter(layout.method_dir, seed=8)  # a model the gate never judged
    forged = registry.register_candidate(params.tracked(), layout)["version"]
    client.set_model_version_tag(name, forged, TAG_DECISION, APPROVED)
    client.set_registered_model_alias(name, "champion", forged)
    with pytest.raises(ModelError, match=rf"version {forged} of {name}\): no gate decision record"):
        anonymize(tmp_path, name)
    # the approved version's record copied over: it names another version and another adapter
    record_tag = client.get_model_version(name, version).tags[decision_record.TAG_RECORD]
    client.set_model_version_tag(name, forged, decision_record.TAG_RECORD, record_tag)
    with pytest.raises(ModelError, match=f"record says 'approved' for version {version}"):
        anonymize(tmp_path, name)
    # the copy edited to name the forged version: its adapter digest still gives it away
    edited = {**json.loads(record_tag), "version": forged}
    client.set_model_version_tag(name, forged, decision_record.TAG_RECORD, json.dumps(edited))
    with pytest.raises(ModelError, match="method digest does not match the registered method"):
        anonymize(tmp_path, name)
    assert not (tmp_path / "out" / "index.json").exists()


def test_with_a_signing_key_only_the_gates_signature_approves(tmp_path, monkeypatch):
    monkeypatch.setenv(decision_record.SIGNING_KEY_ENV, "gate-key-from-a-secret")
    _, layout, name, version = approved_champion(tmp_path)
    client = mlflow.MlflowClient()
    tags = client.get_model_version(name, version).tags
    record = json.loads(tags[decision_record.TAG_RECORD])
    assert record["encoder"] == "builtin-test-encoder@0" and record["adapter_sha256"] == tags[registry.TAG_ADAPTER_SHA]
    assert record["metrics_sha256"] and record["thresholds"]["max_normalized_leakage"] == 0.4
    assert decision_record.TAG_SIGNATURE in tags
    decision = json.loads((layout.report_dir("gate") / "decision.json").read_text())
    assert decision["record"] == record and decision["record_signature"] == tags[decision_record.TAG_SIGNATURE]
    assert anonymize(tmp_path, name)["version"] == version

    loosened = {**record, "thresholds": {**record["thresholds"], "max_normalized_leakage": 10.0}}
    client.set_model_version_tag(name, version, decision_record.TAG_RECORD, json.dumps(loosened))
    with pytest.raises(ModelError, match="signature does not verify"):
        anonymize(tmp_path, name, out="out2")
    client.set_model_version_tag(name, version, decision_record.TAG_RECORD, tags[decision_record.TAG_RECORD])
    monkeypatch.setenv(decision_record.SIGNING_KEY_ENV, "another-key")
    with pytest.raises(ModelError, match="signature does not verify"):
        anonymize(tmp_path, name, out="out3")
    client.delete_model_version_tag(name, version, decision_record.TAG_SIGNATURE)
    with pytest.raises(ModelError, match="unsigned"):
        anonymize(tmp_path, name, out="out4")


def test_metrics_of_another_adapter_are_refused_by_the_gate(tmp_path):
    params = params_for(tmp_path)
    layout = Layout.from_params(params)
    save_random_adapter(layout.method_dir, seed=7)
    write_metrics(layout, GOOD, method_id="0123456789abcdef")
    summary = gate.run_gate(params.tracked(), layout)
    assert summary["decision"] == REJECTED and not summary["promoted"]
    assert any(
        r.startswith("metrics:") and "measured method 0123456789abcdef, not the registered method" in r
        for r in summary["reasons"]
    )
    write_metrics(layout, {k: v for k, v in GOOD.items()}, method_id="")
    assert gate.run_gate(params.tracked(), layout)["decision"] == REJECTED, "metrics that name no method bind to none"


def test_features_of_another_encoder_are_refused(tmp_path):
    _, _, name, _ = approved_champion(tmp_path)
    random_store(tmp_path / "other_features", encoder="hf-videomae@1234")
    with pytest.raises(
        ModelError,
        match="encoder hf-videomae@1234, but the method was approved on features of encoder builtin-test-encoder@0",
    ):
        anonymize(tmp_path, name, source="other_features")


def test_the_release_of_anonymize_is_allow_listed_and_approved_after_it_is_complete(tmp_path):
    from latentanon import stages

    params, _, name, _ = approved_champion(tmp_path)
    summary = stages.anonymize(f"models:/{name}@champion", str(tmp_path / "features"), str(tmp_path / "out"), params)
    assert summary["publish_status"] == release.APPROVED
    records = json.loads((tmp_path / "out" / "privacy_videos" / "shard-00000.records.json").read_text())
    assert set(records["columns"]) <= set(release.RELEASE_COLUMNS)
    assert not {"v0", "v1"} & set(records["values"]["video_id"])


def test_credentials_in_params_never_reach_mlflow_params(tmp_path):
    from latentanon.config import params_from_dict

    params = params_from_dict(
        {
            "paths": {"workdir": str(tmp_path)},
            "tune": {"storage": "postgresql://optuna:hunter2@db.internal:5432/optuna"},
        }
    )
    run_id = runs.pipeline_run_id(params.tracked(), Layout.from_params(params))
    client = mlflow.MlflowClient()
    child = runs.log_child_run(
        client, run_id, "trial-0", {"storage": "mysql://u:hunter3@db/x", "api_key": "k-123"}, {"value": 1.0}
    )
    for logged in (client.get_run(run_id).data.params, client.get_run(child).data.params):
        assert logged and not any(s in v for v in logged.values() for s in ("hunter2", "hunter3", "k-123"))
    assert client.get_run(run_id).data.params["tune.storage"] == "postgresql://optuna:***@db.internal:5432/optuna"


def test_redaction_rule():
    tree = {
        "aws_secret_access_key": "abc",
        "password": "p",
        "signingKey": "s",
        "bias_raw_gap_key": "bias.raw.gap",
        "uri": "s3://bucket/x",
        "url": "https://user:pw@host/path?token=t1&x=1",
        "nested": [{"db_token": "t"}],
        "empty_password": "",
        "monkey": "banana",
    }
    out = redact(tree)
    assert out["aws_secret_access_key"] == out["password"] == out["signingKey"] == "***"
    assert out["nested"] == [{"db_token": "***"}] and out["empty_password"] == ""
    assert out["bias_raw_gap_key"] == "bias.raw.gap" and out["monkey"] == "banana" and out["uri"] == "s3://bucket/x"
    assert out["url"] == "https://user:***@host/path?token=***&x=1"
    assert redact_text("sqlite:////tmp/study.db") == "sqlite:////tmp/study.db"
