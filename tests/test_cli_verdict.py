"""What the terminal says: one key result per stage, the gate's verdict with its reasons and what
to commit; the publish status of the shared features; the one tracking-URI rule."""

from __future__ import annotations

import json

import pytest

from latentanon import __version__, cli, stages
from latentanon.config import Layout, params_from_dict
from latentanon.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_USAGE, DataError, ValidationFailed
from latentanon.tracking import runs
from latentanon.tracking.uri import source_of, tracking_uri

REJECTED = {
    "decision": "rejected",
    "model_name": "latentanon-aam",
    "version": "3",
    "reasons": ["normalized_leakage: 1.13 <= 0.4: FAIL", "moving_normalized_leakage: 0.75 <= 0.4: FAIL"],
    "checks": [{"name": "normalized_leakage", "passed": False}, {"name": "utility_drop_ar", "passed": True}],
    "decided_at": "2026-01-01T00:00:00Z",
}


def _params(tmp_path, **tracking):
    return params_from_dict({"paths": {"workdir": str(tmp_path)}, "tracking": tracking})


def test_every_stage_prints_its_key_result():
    lines = {
        "generate": stages.key_result("generate", {"videos": {"actions": 10, "privacy_videos": 5}, "root": "data/b"}),
        "validate": stages.key_result("validate", {"checks": 40, "sets": {"a": {}, "b": {}}, "quarantined": 0}),
        # the stage's own summary shape: the probe's figures, and the pretraining's val accuracy
        "pretrain_encoder": stages.key_result(
            "pretrain_encoder",
            {"trained": True, "val_accuracy": 0.52, "probe": {"action_top1": 0.61, "action_chance": 0.083}},
        ),
        "extract": stages.key_result("extract", {"clips": 1200, "clips_per_second": 35.5, "store": "features"}),
        "tune": stages.key_result(
            "tune",
            {"trials_complete": 12, "front_size": 4, "raw_leakage": 0.42, "chosen": {"trial": 7, "leakage": 0.4}},
        ),
        "train": stages.key_result("train", {"epochs": 30, "best_epoch": 21, "publish_status": "unapproved"}),
        "evaluate": stages.key_result(
            "evaluate",
            {"trained_normalized_leakage": 1.13, "trained_utility_relative_drop": {"ar": -0.13, "tad": 0.004}},
        ),
        "audit_bias": stages.key_result(
            "audit_bias",
            {
                "bias_gap_raw": 0.12,
                "bias_gap_trained": 0.1,
                "report": "r.md",
                "headline": {"privacy": {"static_leakage": 1.13, "moving_leakage": 0.75}},
            },
        ),
        "gate": stages.key_result(
            "gate",
            {"decision": "rejected", "version": "3", "model_name": "m", "reasons": ["a", "b"], "promoted": False},
        ),
    }
    assert lines["generate"] == "15 files in data/b"
    assert lines["validate"] == "40 checks passed on 2 sets; 0 files quarantined"
    assert "action probe top-1 0.610" in lines["pretrain_encoder"] and "0.520" not in lines["pretrain_encoder"]
    assert "validation action accuracy 0.520" in stages.key_result(
        "pretrain_encoder", {"trained": True, "val_accuracy": 0.52}
    )
    assert "1200 clips" in lines["extract"] and "35.5 clips/s" in lines["extract"]
    assert "chose trial 7" in lines["tune"] and "0.400" in lines["tune"]
    assert "marked unapproved" in lines["train"]
    assert "1.130" in lines["evaluate"] and "AR -13.0%" in lines["evaluate"] and "TAD +0.4%" in lines["evaluate"]
    assert "static 1.130" in lines["audit_bias"] and "moving 0.750" in lines["audit_bias"]
    assert lines["gate"].startswith("REJECTED: version 3 of m not promoted (2 reasons")
    assert "now @champion" in stages.key_result(
        "gate", {"decision": "approved", "version": "4", "model_name": "m", "promoted": True}
    )
    assert stages.key_result("extract", {}).startswith("? clips")  # a summary short of keys still prints


def test_verdict_reads_the_decision_and_says_what_to_commit(tmp_path, capsys, monkeypatch):
    params = _params(tmp_path)
    with pytest.raises(Exception, match="no gate decision yet"):
        stages.verdict(params)
    (tmp_path / "reports" / "gate").mkdir(parents=True)
    (tmp_path / "reports" / "gate" / "decision.json").write_text(json.dumps(REJECTED))
    (tmp_path / "p.yaml").write_text(json.dumps({"paths": {"workdir": str(tmp_path)}}))
    assert cli.main(["verdict", "--params", str(tmp_path / "p.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Gate decision: REJECTED (model latentanon-aam, version 3" in out
    assert "  - normalized_leakage: 1.13 <= 0.4: FAIL" in out and "moving_normalized_leakage" in out
    assert "checks passed: utility_drop_ar" in out
    assert f"details: {tmp_path / 'reports' / 'gate' / 'decision.json'}, {tmp_path / 'reports' / 'report.md'}" in out
    assert "outside the DVC job" in out  # a workdir other than the repository: no commit advice
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(json.dumps({"paths": {"workdir": "."}}))
    assert cli.main(["verdict", "--params", str(tmp_path / "p.yaml")]) == 0
    assert "git add dvc.lock params.yaml && git commit" in capsys.readouterr().out
    approved = stages.verdict_text({**REJECTED, "decision": "approved", "reasons": []})
    assert "is @champion" in approved and "approved for sharing" in approved and "FAIL" not in approved
    (tmp_path / "reports" / "gate" / "decision.json").write_text("{broken")
    assert cli.main(["verdict", "--params", str(tmp_path / "p.yaml")]) == EXIT_BAD_INPUT
    assert "not valid JSON" in capsys.readouterr().err


def test_publish_status_marks_the_shared_store(tmp_path):
    store = tmp_path / "features_anon"
    assert stages.write_publish_status(str(store), stages.UNAPPROVED, ["awaiting"]).startswith("not written")
    store.mkdir()
    assert stages.write_publish_status(str(store), stages.UNAPPROVED, ["awaiting the gate"]) == "unapproved"
    record = stages.read_publish_status(str(store))
    assert record["status"] == "unapproved" and record["share"] is False and record["reasons"] == ["awaiting the gate"]
    stages.write_publish_status(str(store), stages.REJECTED, ["normalized_leakage: FAIL"])
    assert stages.read_publish_status(str(store))["reasons"] == ["normalized_leakage: FAIL"]
    stages.write_publish_status(str(store), stages.APPROVED, ["all checks passed"])
    assert stages.read_publish_status(str(store))["share"] is True
    assert stages.read_publish_status(str(tmp_path / "none")) is None


def test_the_store_ignores_the_status_file(tmp_path):
    """The status file sits at the store's root without disturbing the sets it lists."""
    from latentanon.features.store import FeatureStore

    (tmp_path / "s").mkdir()
    stages.write_publish_status(str(tmp_path / "s"), stages.UNAPPROVED, ["x"])
    assert FeatureStore(str(tmp_path / "s")).set_names() == []


def test_one_tracking_uri_rule(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert tracking_uri("", tmp_path) == default
    assert tracking_uri("  ", tmp_path) == default
    assert tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    assert (
        tracking_uri("http://127.0.0.1:5000", tmp_path, {"MLFLOW_TRACKING_URI": "sqlite:///x.db"}) == "sqlite:///x.db"
    )
    assert source_of("", {}) == "the default: mlflow.db in paths.workdir"
    assert "params" in source_of("http://x", {}) and "environment" in source_of("", {"MLFLOW_TRACKING_URI": "y"})
    # the stages, anonymize and the CLI all answer the same
    configured = _params(tmp_path, tracking_uri="http://127.0.0.1:9")
    assert (
        runs.resolve_tracking_uri(configured.tracking, Layout.from_params(configured))
        == stages.tracking_uri_for(configured)
        == "http://127.0.0.1:9"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    assert (
        runs.resolve_tracking_uri(configured.tracking, Layout.from_params(configured))
        == stages.tracking_uri_for(configured)
        == f"sqlite:///{tmp_path / 'env.db'}"
    )


def test_tracking_uri_command(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params_file = tmp_path / "p.yaml"
    params_file.write_text(json.dumps({"paths": {"workdir": str(tmp_path / "w")}}))
    assert cli.main(["tracking-uri", "--params", str(params_file), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"sqlite:///{(tmp_path / 'w' / 'mlflow.db').resolve()}"
    assert cli.main(["tracking-uri", "--params", str(params_file), "--set", "tracking.tracking_uri=http://h:1"]) == 0
    assert capsys.readouterr().out.strip() == "http://h:1  (from tracking.tracking_uri in the params file)"
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the defaults (workdir ".")
    assert cli.main(["tracking-uri", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"


def test_anonymize_without_a_registry_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["anonymize", "--model", "models:/latentanon-aam@champion", "--features", "f", "--out", "o"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no MLflow registry there" in err and "run the pipeline" in err


def test_run_from_validate_skips_generate_and_prints_each_stage(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_execute(name, params, track=True, **kwargs):
        calls.append(name)
        return {"seconds": 0.5}

    monkeypatch.setattr(stages, "execute", fake_execute)
    params_file = tmp_path / "p.yaml"
    params_file.write_text(json.dumps({"paths": {"workdir": str(tmp_path)}}))
    assert cli.main(["run", "--from", "validate", "--params", str(params_file)]) == 0
    assert calls == list(stages.PIPELINE[1:])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(calls) and out[0].startswith("[validate] ") and out[0].endswith("(0.5s)")
    assert cli.main(["run", "--from", "nope", "--params", str(params_file)]) == EXIT_USAGE
    assert "unknown stage" in capsys.readouterr().err


def test_version_is_printed_on_stdout(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"latentanon {__version__}"


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (ValidationFailed("set 'actions', check 'height = 24': 2 rows"), EXIT_CHECK_FAILED),
        (DataError("data/x.mp4: not a video"), EXIT_BAD_INPUT),
    ],
)
def test_bad_input_and_failed_checks_have_their_own_exit_status(tmp_path, monkeypatch, capsys, raised, status):
    def failing_execute(name, params, track=True, **kwargs):
        raise raised

    monkeypatch.setattr(stages, "execute", failing_execute)
    params_file = tmp_path / "p.yaml"
    params_file.write_text(json.dumps({"paths": {"workdir": str(tmp_path)}}))
    assert cli.main(["validate", "--params", str(params_file)]) == status
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"latentanon: error: {raised}\n"


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["no-such-command"])
    assert done.value.code == EXIT_USAGE
    (tmp_path / "p.yaml").write_text(json.dumps({"nope": {}}))
    assert cli.main(["validate", "--params", str(tmp_path / "p.yaml")]) == EXIT_USAGE
    assert "nope" in capsys.readouterr().err
    assert len({EXIT_USAGE, EXIT_BAD_INPUT, EXIT_CHECK_FAILED, 0, 1}) == 5
