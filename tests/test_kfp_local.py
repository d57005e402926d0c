"""The whole Kubeflow pipeline on the smoke params, locally: kfp.local's SubprocessRunner runs
every component in a subprocess of this interpreter (no Docker), with two extraction workers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # components/ and pipelines/ live at the repo root, not in src/
    sys.path.insert(0, str(REPO))


def task_dirs(pipeline_root: Path, task: str) -> list[Path]:
    """The output folders of one task in this run's pipeline root (one per loop iteration; tasks
    sit inside the exit handler's, the loops' and the condition's folders)."""
    runs = [p for p in pipeline_root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return sorted(p for p in runs[0].rglob(task) if p.is_dir())


@pytest.mark.slow
def test_pipeline_runs_end_to_end_on_smoke_params(tmp_path, monkeypatch):
    import mlflow
    from kfp import local
    from pipelines.latentanon_pipeline import make_pipeline

    from latentanon import kfp_io
    from latentanon.kfp_io.workspace import ENV_SCRATCH
    from latentanon.tracking.registry import TAG_DECISION

    # The CPU build: the GPU build asks for device=cuda and would (rightly) stop on this machine.
    latentanon_pipeline = make_pipeline(gpus_per_task=0)

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("LATENTANON_TUNE_STORAGE", raising=False)
    # Workspaces land here, not in /tmp. Not through TMPDIR: the evaluate pool's socket paths live
    # under it, and a pytest-xdist tmp_path makes them longer than AF_UNIX allows (108 bytes).
    monkeypatch.setenv(ENV_SCRATCH, str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    pipeline_root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)

    smoke = (REPO / "params.smoke.yaml").read_text()
    # The typed run parameters (what the KFP run form shows) carry the smallest settings that still
    # exercise every stage (the test checks the wiring, not the method) and gate thresholds any
    # adapter passes, so that the promote branch runs too. Only AR is gated: a smoke-sized TAD or
    # AD head can score 0, where a relative drop is undefined and the gate (rightly) rejects.
    knobs = {
        **kfp_io.knob_defaults(smoke),
        "pretrain_epochs": 1,
        "tune_trials": 1,
        "tune_epochs_per_trial": 1,
        "train_epochs": 1,
        "max_normalized_leakage": 1000.0,
        "max_moving_normalized_leakage": 1000.0,
        "min_relative_cmap_drop": -1000.0,
        "max_utility_relative_drop": 1000.0,
    }
    latentanon_pipeline(
        params_yaml=smoke,
        overrides=[
            "evaluate.seeds=[0]",
            # one baseline and no unseen-task refits: the wiring, not the comparison (the DVC and
            # README tests run the smoke profile's every method)
            "evaluate.methods=[identity]",
            "evaluate.unseen_seeds=[]",
            "audit_bias.seeds=[0]",
            "gate.require_bias_gap_not_larger=false",
            "gate.utility_tasks=[ar]",
        ],
        extract_workers_count=2,
        tune_workers_count=2,
        **knobs,
    )
    (gate,) = task_dirs(pipeline_root, "gate")
    recorded = json.loads((gate / "gate_report" / "decision.json").read_text())
    decision = recorded["decision"]
    assert decision == "approved", "thresholds above let any adapter through"
    # The gate marked the anonymized store it received: approved (or rejected) in Kubeflow too,
    # while train's own artifact stays "unapproved" (KFP input artifacts are never modified).
    released = json.loads((gate / "released_store" / "PUBLISH_STATUS.json").read_text())
    assert released["status"] == decision and released["share"] is (decision == "approved")
    (trained,) = [d for d in task_dirs(pipeline_root, "train") if (d / "executor_output.json").is_file()]
    assert json.loads((trained / "anonymized" / "PUBLISH_STATUS.json").read_text())["status"] == "unapproved"

    # Extraction fanned out over two workers, then one store with an index.
    workers = task_dirs(pipeline_root, "extract-shards")
    assert len(workers) == 2
    (store,) = task_dirs(pipeline_root, "finalize-extract")
    index = json.loads((store / "features" / "index.json").read_text())
    assert {"actions", "privacy_videos", "bias"} <= set(index["sets"])

    # Without a shared study storage, one tune worker; the select step wrote the choice.
    assert len(task_dirs(pipeline_root, "tune-trials")) == 1
    (select,) = task_dirs(pipeline_root, "tune-select")
    chosen = json.loads((select / "tune_report" / "chosen.json").read_text())
    assert set(chosen["weights"]) >= {"latent_consistency", "utility", "privacy"}

    # Metrics and the readable report from audit_bias; the gate's decision file.
    (audit,) = task_dirs(pipeline_root, "audit-bias")
    metrics = json.loads((audit / "metrics_json").read_text())
    assert "privacy" in metrics and "utility" in metrics
    assert (audit / "report").read_text().strip()
    promoted = task_dirs(pipeline_root, "promote")
    assert bool(promoted) == (decision == "approved")

    # MLflow: one parent run, closed by the exit handler with the run's final state; the cached
    # stages (which take no run id) were logged into it by log_stages; the gate's verdict is a tag.
    client = mlflow.MlflowClient()
    parents = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`latentanon.pipeline_run` = 'true'",
    )
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["latentanon.gate_decision"] == decision
    assert parent.data.tags[kfp_io.TAG_KFP_STATE] == "SUCCEEDED" and parent.data.tags[kfp_io.TAG_KFP_RUN]
    for stage in ("generate", "validate", "pretrain_encoder", "finalize_extract", "evaluate"):
        assert any(key.startswith(f"{stage}.") for key in parent.data.metrics), stage
    # Plots reached the run page as HTML.
    (evaluated,) = task_dirs(pipeline_root, "evaluate")
    assert (evaluated / "plots").read_text().count("<img") >= 2
    if recorded["version"] is not None:
        version = client.get_model_version(recorded["model_name"], recorded["version"])
        assert version.tags[TAG_DECISION] == decision
        if decision == "approved":
            champion = client.get_model_version_by_alias(recorded["model_name"], "champion")
            assert champion.version == version.version
            record = json.loads((promoted[0] / "champion" / "registered_model.json").read_text())
            assert record["version"] == str(version.version)
