"""The Kubeflow task that publishes the anonymized store (the train component) under kfp.local:
its `anonymized` artifact holds only allow-listed record columns and the release meta."""

# No ``from __future__ import annotations``: kfp reads the components' annotations as types.
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # components/ lives at the repo root, not in src/
    sys.path.insert(0, str(REPO))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["identity", "noise@0.2"])
def test_the_kubeflow_train_task_publishes_only_allow_listed_columns(tmp_path, monkeypatch, method):
    from components.image import PROJECT_IMAGE
    from components.train.component import train
    from kfp import dsl, local
    from kfp.dsl import Dataset, Output

    from latentanon.features import release
    from test_release import ENCODER, PRIVATE_OR_LINKING, source_sets, write_source

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    made = tmp_path / "made_features"
    write_source(str(made), source_sets())

    @dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
    def copy_store(store: str, features: Output[Dataset], tune_report: Output[Dataset]):
        """Hands a prepared feature store on as an artifact (what finalize-extract does)."""
        import os
        import shutil

        shutil.copytree(store, features.path)
        os.makedirs(tune_report.path)

    @dsl.pipeline
    def publish(params_yaml: str, store: str, overrides: list[str]):
        features = copy_store(store=store)
        train(
            params_yaml=params_yaml,
            overrides=overrides,
            mlflow_run_id="",
            features=features.outputs["features"],
            tune_report=features.outputs["tune_report"],
        )

    pipeline_root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    publish(
        params_yaml=(REPO / "params.smoke.yaml").read_text(),
        store=str(made),
        overrides=[f"train.method={method}", "train.use_tuned_weights=false"],
    )

    (anonymized,) = [p for p in pipeline_root.rglob("anonymized") if p.is_dir()]
    index = json.loads((anonymized / "index.json").read_text())
    assert set(index["sets"]) == set(source_sets())
    assert set(index["meta"]) <= set(release.RELEASE_META_KEYS) and index["meta"]["encoder"]["identity"] == ENCODER
    assert index["meta"]["method"]["name"] == method
    for records_file in anonymized.glob("*/shard-*.records.json"):
        columns = json.loads(records_file.read_text())["columns"]
        assert set(columns) <= set(release.RELEASE_COLUMNS) and not PRIVATE_OR_LINKING & set(columns), records_file
    assert json.loads((anonymized / release.PUBLISH_STATUS_FILE).read_text())["status"] == release.UNAPPROVED
    assert str(made) not in (anonymized / "index.json").read_text()
