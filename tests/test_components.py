"""KFP components: image, artifact types, the stage each one calls, and the kfp_io glue."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # components/ and pipelines/ live at the repo root, not in src/
    sys.path.insert(0, str(REPO))

from kfp.dsl import HTML, Dataset, Markdown, Metrics, Model  # noqa: E402

from latentanon import kfp_io  # noqa: E402
from latentanon.config import ConfigError  # noqa: E402

STAGE_FOLDERS = (
    "generate",
    "validate",
    "pretrain_encoder",
    "extract",
    "tune",
    "train",
    "evaluate",
    "audit_bias",
    "gate",
)
# component -> the stage its body runs through latentanon.stages.execute (what the CLI, hence DVC,
# runs too); the gate decides through kfp_io so that promotion can be the pipeline's dsl.If branch.
STAGE_CALLS = {
    "generate": '"generate", stages.execute',
    "validate": '"validate", stages.execute',
    "pretrain_encoder": '"pretrain_encoder", stages.execute',
    "extract_shards": '"extract", stages.execute',
    "finalize_extract": '"finalize_extract", stages.execute',
    "tune_trials": '"tune", stages.execute',
    "tune_select": '"tune", stages.execute',
    "train": '"train", stages.execute',
    "evaluate": '"evaluate", stages.execute',
    "audit_bias": '"audit_bias", stages.execute',
    "gate": '"gate", stages.execute',
}


def all_components() -> dict:
    import components.audit_bias
    import components.evaluate
    import components.extract
    import components.gate
    import components.generate
    import components.pretrain_encoder
    import components.tracking
    import components.train
    import components.tune
    import components.validate

    found = {}
    for module in (
        components.generate,
        components.validate,
        components.pretrain_encoder,
        components.extract,
        components.tune,
        components.train,
        components.evaluate,
        components.audit_bias,
        components.gate,
        components.tracking,
    ):
        for name in module.__all__:
            found[name] = getattr(module, name)
    return found


def io_types(component) -> tuple[dict, dict]:
    spec = component.component_spec
    inputs = {k: v.type.split("@")[0] for k, v in (spec.inputs or {}).items()}
    outputs = {k: v.type.split("@")[0] for k, v in (spec.outputs or {}).items()}
    return inputs, outputs


def test_one_folder_per_stage_with_a_component_module():
    for stage in STAGE_FOLDERS:
        folder = REPO / "components" / stage
        assert (folder / "component.py").is_file(), f"components/{stage}/component.py missing"
        assert (folder / "__init__.py").is_file()


def test_every_component_runs_in_the_project_image_without_installing_anything():
    from components.image import PROJECT_IMAGE

    assert ":" in PROJECT_IMAGE and not PROJECT_IMAGE.endswith(":latest")
    for name, component in all_components().items():
        container = component.component_spec.implementation.container
        assert container.image == PROJECT_IMAGE, name
        command = " ".join(container.command or []) + " ".join(container.args or [])
        assert "pip install" not in command, f"{name} installs packages at run time"
        assert "kfp.dsl.executor_main" in command, f"{name} is not a lightweight Python component"


@pytest.mark.parametrize("name,call", sorted(STAGE_CALLS.items()))
def test_component_body_calls_the_same_stage_function_as_dvc(name, call):
    import inspect

    component = all_components()[name]
    source = inspect.getsource(component.python_func)
    flat = " ".join(source.split()).replace("( ", "(")  # the formatter may break the call over lines
    assert call in flat, f"{name} does not call {call}"
    assert "from latentanon import" in source


def test_artifact_types_follow_what_they_hold():
    comps = all_components()
    dataset, model, metrics, markdown = (t.schema_title for t in (Dataset, Model, Metrics, Markdown))
    _, out = io_types(comps["generate"])
    assert out["data"] == dataset
    inp, out = io_types(comps["pretrain_encoder"])
    assert inp["data"] == dataset and inp["manifests"] == dataset
    assert out["encoder"] == model and out["metrics"] == metrics
    inp, out = io_types(comps["train"])
    assert inp["features"] == dataset and out["method"] == model and out["anonymized"] == dataset
    _, out = io_types(comps["audit_bias"])
    assert out["report"] == markdown and out["metrics"] == metrics
    inp, _ = io_types(comps["finalize_extract"])
    assert inp["shards"] == dataset
    assert comps["finalize_extract"].component_spec.inputs["shards"].is_artifact_list
    assert comps["tune_select"].component_spec.inputs["trials"].is_artifact_list
    _, out = io_types(comps["promote"])
    assert out["champion"] == model
    for name in (
        "generate",
        "validate",
        "pretrain_encoder",
        "extract_shards",
        "finalize_extract",
        "tune_trials",
        "tune_select",
        "train",
        "evaluate",
        "audit_bias",
        "gate",
        "promote",
    ):
        inp, _ = io_types(comps[name])
        assert inp["params_yaml"] == "String" and inp["overrides"].startswith("typing.List"), name
        # Content-cached stages take no run id; the later ones log under the parent run.
        cached = name in ("generate", "validate", "pretrain_encoder", "extract_shards", "finalize_extract")
        assert ("mlflow_run_id" in inp) is not cached, name
    for name in ("pretrain_encoder", "tune_select", "train", "evaluate", "audit_bias"):
        _, out = io_types(comps[name])
        assert out["plots"] == HTML.schema_title, name
    _, out = io_types(comps["finalize_extract"])
    assert out["finalize_extract_report"] == dataset


# ---------------------------------------------------------------------------------------------
# kfp_io


def artifact(cls, path: Path):
    return cls(uri=str(path), name=path.name)


SMOKE_YAML = (REPO / "params.smoke.yaml").read_text()


def test_parse_params_rejects_bad_yaml_unknown_keys_and_bad_overrides():
    with pytest.raises(ConfigError, match="params_yaml"):
        kfp_io.parse_params("paths: [unclosed")
    with pytest.raises(ConfigError, match="mapping"):
        kfp_io.parse_params("- a list")
    with pytest.raises(ConfigError):
        kfp_io.parse_params("nosuchsection:\n  x: 1\n")
    with pytest.raises(ConfigError):
        kfp_io.parse_params(SMOKE_YAML, ["train.epochs=many"])
    tree, overrides = kfp_io.parse_params(SMOKE_YAML, ["train.epochs=5"])
    assert tree["data"]["root"] == "data/benchmark-smoke" and overrides == ["train.epochs=5"]


def test_workspace_links_inputs_and_copies_outputs_into_artifacts(tmp_path):
    upstream = tmp_path / "upstream-manifests"
    upstream.mkdir()
    (upstream / "actions.csv").write_text("video_id\nv1\n")
    manifests = artifact(Dataset, upstream)
    encoder = artifact(Model, tmp_path / "out" / "encoder")
    report = artifact(Dataset, tmp_path / "out" / "report")
    with kfp_io.StageWorkspace(
        SMOKE_YAML,
        ["train.epochs=7"],
        inputs={"manifests": manifests},
        outputs={"encoder": encoder, "pretrain_encoder_report": report},
    ) as ws:
        layout = ws.layout
        assert ws.params.train.epochs == 7
        assert layout.workdir == ws.root
        assert layout.data_root == ws.root / kfp_io.BENCHMARK_DIR  # absolute or not, data lives inside
        assert (layout.manifests / "actions.csv").read_text() == "video_id\nv1\n"
        assert layout.manifests.is_symlink()  # read-only input: linked, not copied
        layout.encoder_dir.mkdir(parents=True)
        (layout.encoder_dir / "config.json").write_text('{"dim": 8}')
        layout.report_dir("pretrain_encoder").mkdir(parents=True)
        (layout.report_dir("pretrain_encoder") / "probe.json").write_text("{}")
        for role, out in ws.outputs.items():
            ws._stage_out(role, out)
        root = ws.root
    assert not root.exists(), "the scratch workspace is removed afterwards"
    assert json.loads((tmp_path / "out" / "encoder" / "config.json").read_text()) == {"dim": 8}
    assert (tmp_path / "out" / "report" / "probe.json").exists()
    assert encoder.metadata["role"] == "encoder"
    assert sorted(p.name for p in upstream.iterdir()) == ["actions.csv"], "the upstream artifact is untouched"


def test_missing_output_is_an_error_naming_the_role(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv(kfp_io.ENV_SCRATCH, str(scratch))
    method = artifact(Model, tmp_path / "method")
    with kfp_io.StageWorkspace(SMOKE_YAML, [], inputs={}, outputs={"method": method}) as ws:
        assert ws.root.parent == scratch
        with pytest.raises(kfp_io.ArtifactError, match="method"):
            ws._stage_out("method", method)
    with (
        pytest.raises(kfp_io.ArtifactError, match="missing"),
        kfp_io.StageWorkspace(SMOKE_YAML, [], inputs={"data": artifact(Dataset, tmp_path / "nope")}, outputs={}),
    ):
        pass
    assert list(scratch.iterdir()) == [], "a failed set-up leaves no workspace behind"


def test_fan_in_merges_worker_stores_into_a_private_copy(tmp_path):
    shards = []
    for worker in range(2):
        path = tmp_path / f"worker{worker}"
        (path / "actions").mkdir(parents=True)
        (path / "actions" / f"shard-0000{worker}.safetensors").write_bytes(b"x" * (worker + 1))
        shards.append(artifact(Dataset, path))
    merged = artifact(Dataset, tmp_path / "merged")
    with kfp_io.StageWorkspace(SMOKE_YAML, [], inputs={"features": shards}, outputs={"features": merged}) as ws:
        store = Path(ws.layout.features_uri)
        assert not store.is_symlink()
        assert sorted(p.name for p in (store / "actions").iterdir()) == [
            "shard-00000.safetensors",
            "shard-00001.safetensors",
        ]
        (store / "index.json").write_text("{}")
        ws._stage_out("features", merged)
    assert (tmp_path / "merged" / "index.json").exists()
    assert not (tmp_path / "worker0" / "index.json").exists()


def test_workspace_scopes_each_remote_store_to_its_own_credentials(tmp_path, monkeypatch):
    """Inside a step the remote stores are the credential scopes (each signed with its own key);
    a local store is none, and leaving the step restores what was there."""
    from latentanon.features.s3 import scope_variable

    monkeypatch.setenv(scope_variable("RELEASE", "URI"), "s3://before/release")
    monkeypatch.delenv(scope_variable("FEATURES", "URI"), raising=False)
    overrides = ["paths.features_uri=s3://latentanon/features", f"paths.anonymized_uri={tmp_path / 'anon'}"]
    with kfp_io.StageWorkspace(SMOKE_YAML, overrides, inputs={}, outputs={}):
        assert os.environ[scope_variable("FEATURES", "URI")] == "s3://latentanon/features"
        assert os.environ[scope_variable("RELEASE", "URI")] == "s3://before/release"
    assert scope_variable("FEATURES", "URI") not in os.environ
    overrides = ["paths.anonymized_uri=s3://latentanon/features-anon"]
    with kfp_io.StageWorkspace(SMOKE_YAML, overrides, inputs={}, outputs={}):
        assert os.environ[scope_variable("RELEASE", "URI")] == "s3://latentanon/features-anon"
    assert os.environ[scope_variable("RELEASE", "URI")] == "s3://before/release"


def test_remote_store_travels_as_a_pointer(tmp_path):
    uri = "s3://bucket/prefix/features"
    out = artifact(Dataset, tmp_path / "store")
    with kfp_io.StageWorkspace(SMOKE_YAML, [f"paths.features_uri={uri}"], inputs={}, outputs={"features": out}) as ws:
        assert ws.layout.features_uri == uri
        ws._stage_out("features", out)
    assert kfp_io.read_store_pointer(tmp_path / "store") == uri
    assert out.metadata["store_uri"] == uri
    # Downstream, the pointer wins even when the params do not name the store.
    with kfp_io.StageWorkspace(
        SMOKE_YAML, [], inputs={"features": artifact(Dataset, tmp_path / "store")}, outputs={}
    ) as ws:
        assert ws.layout.features_uri == uri
    # A local features_uri in the params is replaced by the workspace's own store.
    with kfp_io.StageWorkspace(
        SMOKE_YAML, [f"paths.features_uri={tmp_path / 'elsewhere'}"], inputs={}, outputs={}
    ) as ws:
        assert ws.layout.features_uri == str(ws.root / "features")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / kfp_io.STORE_POINTER).write_text('{"uri": "/local/path"}')
    with pytest.raises(kfp_io.ArtifactError, match="not a remote URI"):
        kfp_io.read_store_pointer(tmp_path / "bad")


def test_role_locations_and_unknown_roles(tmp_path):
    with kfp_io.StageWorkspace(SMOKE_YAML, [], inputs={}, outputs={}) as ws:
        layout = ws.layout
        assert kfp_io.role_location("tune_report", layout) == layout.report_dir("tune")
        assert kfp_io.role_location("report_md", layout) == layout.reports / "report.md"
        assert kfp_io.role_location("method", layout) == layout.method_dir
        with pytest.raises(kfp_io.ArtifactError, match="unknown artifact role"):
            kfp_io.role_location("weights", layout)


def test_tune_fans_out_only_with_a_shared_server_storage(monkeypatch):
    monkeypatch.delenv(kfp_io.ENV_TUNE_STORAGE, raising=False)
    assert kfp_io.tune_worker_count(SMOKE_YAML, [], 4) == 1
    assert kfp_io.tune_worker_count(SMOKE_YAML, ["tune.storage=sqlite:///x.db"], 4) == 1
    shared = ["tune.storage=postgresql+psycopg://u@db/optuna"]
    assert kfp_io.tune_worker_count(SMOKE_YAML, shared, 4) == 2  # smoke n_trials = 2: no idle worker
    assert kfp_io.tune_worker_count(SMOKE_YAML, [*shared, "tune.n_trials=10"], 4) == 4
    monkeypatch.setenv(kfp_io.ENV_TUNE_STORAGE, "postgresql+psycopg://u@db/optuna")
    assert kfp_io.tune_worker_count(SMOKE_YAML, ["tune.n_trials=10"], 3) == 3
    with pytest.raises(ConfigError, match="at least 1"):
        kfp_io.tune_worker_count(SMOKE_YAML, [], 0)


def test_worker_items_carry_what_a_loop_iteration_needs():
    assert kfp_io.worker_items(2, params_yaml="a: 1") == [
        {"worker": 0, "num_workers": 2, "params_yaml": "a: 1"},
        {"worker": 1, "num_workers": 2, "params_yaml": "a: 1"},
    ]
    assert kfp_io.worker_items(1, mlflow_run_id="run-1", params_yaml="") == [
        {"worker": 0, "num_workers": 1, "mlflow_run_id": "run-1", "params_yaml": ""}
    ]
    with pytest.raises(ConfigError, match="at least 1"):
        kfp_io.worker_items(0)
    with pytest.raises(kfp_io.ArtifactError, match="mlflow_run_id"):
        kfp_io.worker_items(1, mlflow_run_id=3)
    with pytest.raises(kfp_io.ArtifactError, match="mlflow_run_id"), kfp_io.use_parent_run(1.0):
        pass


def test_typed_run_parameters_sit_between_params_yaml_and_overrides():
    defaults = kfp_io.knob_defaults((REPO / "params.yaml").read_text())
    assert set(defaults) == set(kfp_io.PIPELINE_KNOBS)
    assert isinstance(defaults["train_epochs"], int) and isinstance(defaults["max_normalized_leakage"], float)
    smoke = kfp_io.knob_defaults(SMOKE_YAML)
    knobs = {**smoke, "train_epochs": 7, "max_normalized_leakage": 0.5, "encoder": "builtin"}
    resolved = yaml.safe_load(kfp_io.resolve_params(SMOKE_YAML, ["gate.max_normalized_leakage=0.9"], knobs))
    assert resolved["train"]["epochs"] == 7, "the typed parameter wins over params_yaml"
    assert resolved["gate"]["max_normalized_leakage"] == 0.9, "overrides win over the typed parameters"
    assert resolved["data"]["root"] == yaml.safe_load(SMOKE_YAML)["data"]["root"], "the rest is params_yaml"
    # Deterministic text: the same inputs give the same cache key.
    assert kfp_io.resolve_params(SMOKE_YAML, [], knobs) == kfp_io.resolve_params(SMOKE_YAML, [], dict(knobs))
    with pytest.raises(ConfigError, match="unknown pipeline run parameters"):
        kfp_io.resolve_params(SMOKE_YAML, [], {"epochs": 3})
    with pytest.raises(ConfigError, match="pipeline run parameters"):
        kfp_io.resolve_params(SMOKE_YAML, [], {**knobs, "train_epochs": "many"})


def _knob_values(smoke_changes: dict) -> tuple[dict, dict]:
    """The run form's defaults (from params.yaml) and a form submitted with some knobs changed."""
    form_defaults = kfp_io.knob_defaults((REPO / "params.yaml").read_text())
    return form_defaults, {**form_defaults, **smoke_changes}


def test_a_knob_left_at_its_form_default_keeps_the_base_value_and_the_provenance_says_why():
    form_defaults, knobs = _knob_values({"tune_trials": 5, "max_normalized_leakage": 0.3})
    base = yaml.safe_load(SMOKE_YAML)
    assert form_defaults["train_epochs"] != base["train"]["epochs"], "the test needs a base that differs"
    resolved_text, provenance = kfp_io.resolve_params_with_provenance(
        SMOKE_YAML, ["gate.max_normalized_leakage=0.25"], knobs, form_defaults=form_defaults
    )
    resolved = yaml.safe_load(resolved_text)
    # Left at its default in the form, the knob no longer silently replaces the pasted value.
    assert resolved["train"]["epochs"] == base["train"]["epochs"]
    assert provenance["train_epochs"] == {
        "key": "train.epochs",
        "value": base["train"]["epochs"],
        "source": kfp_io.run_params.SOURCE_PASTED,
    }
    # Changed in the form: the knob wins, and the report keeps the value it replaced.
    assert resolved["tune"]["n_trials"] == 5
    assert provenance["tune_trials"]["source"] == kfp_io.run_params.SOURCE_KNOB
    assert provenance["tune_trials"]["base_value"] == base["tune"]["n_trials"]
    # An override beats the changed knob.
    assert resolved["gate"]["max_normalized_leakage"] == 0.25
    assert provenance["max_normalized_leakage"]["source"] == kfp_io.run_params.SOURCE_OVERRIDE
    # Without a base, a knob at its form default is the default (params.yaml's value, not the code's).
    _, bare = kfp_io.resolve_params_with_provenance("", [], form_defaults, form_defaults=form_defaults)
    assert bare["train_epochs"] == {
        "key": "train.epochs",
        "value": form_defaults["train_epochs"],
        "source": kfp_io.run_params.SOURCE_DEFAULT,
    }
    # The provenance stays out of the cache key: same params, same text, whatever the sources.
    same, _ = kfp_io.resolve_params_with_provenance(
        SMOKE_YAML, [], {**knobs, "train_epochs": base["train"]["epochs"]}, form_defaults=form_defaults
    )
    assert same == kfp_io.resolve_params(SMOKE_YAML, [], knobs, form_defaults=form_defaults)

    markdown = kfp_io.provenance_markdown(provenance)
    assert "| train_epochs | `train.epochs` | `3` | pasted YAML |  |" in markdown
    assert f"| tune_trials | `tune.n_trials` | `5` | typed knob | {base['tune']['n_trials']} |" in markdown
    assert markdown.count("\n| ") == len(kfp_io.PIPELINE_KNOBS) + 1  # header and one row per knob


def test_base_params_by_uri_from_a_path_or_s3_and_never_with_pasted_yaml(tmp_path, monkeypatch):
    from moto.server import ThreadedMotoServer

    form_defaults, knobs = _knob_values({})
    base = yaml.safe_load(SMOKE_YAML)
    local = tmp_path / "base" / "params.yaml"
    local.parent.mkdir()
    local.write_text(SMOKE_YAML)
    text, provenance = kfp_io.resolve_params_with_provenance("", [], knobs, form_defaults, params_uri=str(local))
    assert yaml.safe_load(text)["train"]["epochs"] == base["train"]["epochs"]
    assert provenance["train_epochs"]["source"] == f"{kfp_io.run_params.SOURCE_BASE_URI} {local}"
    assert text == kfp_io.resolve_params(SMOKE_YAML, [], knobs, form_defaults), "URI or pasted: one params text"

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        import boto3

        s3 = boto3.session.Session().client("s3", endpoint_url=f"http://{host}:{port}")
        s3.create_bucket(Bucket="runs")
        s3.put_object(Bucket="runs", Key="bases/smoke/params.yaml", Body=SMOKE_YAML.encode())
        uri = "s3://runs/bases/smoke/params.yaml"
        from_s3, provenance = kfp_io.resolve_params_with_provenance("", [], knobs, form_defaults, params_uri=uri)
        assert from_s3 == text
        assert provenance["tune_trials"]["source"] == f"{kfp_io.run_params.SOURCE_BASE_URI} {uri}"
        with pytest.raises(ConfigError, match="cannot read s3://runs/bases/missing.yaml"):
            kfp_io.resolve_params("", [], knobs, form_defaults, params_uri="s3://runs/bases/missing.yaml")
    finally:
        server.stop()

    with pytest.raises(ConfigError, match="params_yaml and params_uri are both given"):
        kfp_io.resolve_params(SMOKE_YAML, [], knobs, form_defaults, params_uri=str(local))
    with pytest.raises(ConfigError, match=f"cannot read {tmp_path / 'nope.yaml'}"):
        kfp_io.resolve_params("", [], knobs, params_uri=str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="names no file"):
        kfp_io.resolve_params("", [], knobs, params_uri="s3://runs")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=f"params_uri {broken}: not valid YAML"):
        kfp_io.resolve_params("", [], knobs, params_uri=str(broken))
    broken.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=f"params_uri {broken}: .*epochz"):
        kfp_io.resolve_params("", [], knobs, params_uri=str(broken))


def test_resolve_params_component_writes_the_provenance_markdown(tmp_path):
    from components.tracking import resolve_params as resolve_component

    form_defaults, knobs = _knob_values({"train_epochs": 9})
    report = artifact(Markdown, tmp_path / "run_parameters.md")
    text = resolve_component.python_func(
        params_yaml=SMOKE_YAML,
        overrides=[],
        params_uri="",
        form_defaults=json.dumps(form_defaults),
        run_parameters=report,
        **knobs,
    )
    assert yaml.safe_load(text)["train"]["epochs"] == 9
    written = (tmp_path / "run_parameters.md").read_text()
    assert "| train_epochs | `train.epochs` | `9` | typed knob | 3 |" in written
    assert "| tune_trials | `tune.n_trials` | `2` | pasted YAML |  |" in written
    assert report.metadata["provenance"]["train_epochs"]["source"] == "typed knob"
    inp, out = io_types(all_components()["resolve_params"])
    assert inp["params_uri"] == "String" and inp["form_defaults"] == "String"
    assert out["run_parameters"] == Markdown.schema_title


def test_plots_page_embeds_every_png(tmp_path):
    import base64

    folder = tmp_path / "reports" / "train"
    folder.mkdir(parents=True)
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    (folder / "loss_curves.png").write_bytes(png)
    (folder / "notes.txt").write_text("not a plot")
    page = kfp_io.write_plots_html(tmp_path / "out" / "plots", folder, "latentanon train").read_text()
    assert page.count("<img") == 1 and base64.b64encode(png).decode() in page and "loss_curves.png" in page
    empty = kfp_io.write_plots_html(tmp_path / "empty", tmp_path / "missing", "t").read_text()
    assert "no plots" in empty and "<img" not in empty


def test_scalar_metrics_and_gate_decision():
    summary = {"a": 1, "b": {"c": 0.5, "d": "text", "e": float("nan"), "f": True}, "g": [1, 2]}
    assert kfp_io.scalar_metrics(summary) == {"a": 1.0, "b.c": 0.5, "b.f": 1.0}
    metrics = Metrics(uri="unused", name="metrics")
    kfp_io.log_metrics(metrics, summary)
    assert metrics.metadata == {"a": 1.0, "b.c": 0.5, "b.f": 1.0}
    assert kfp_io.gate_decision({"decision": "approved"}) == "approved"
    assert kfp_io.gate_decision({"decision": "rejected"}) == "rejected"
    with pytest.raises(kfp_io.ArtifactError, match="decision"):
        kfp_io.gate_decision({"decision": "maybe"})


def test_decision_names_match_the_registry():
    from latentanon.tracking import registry

    assert (kfp_io.APPROVED, kfp_io.REJECTED) == (registry.APPROVED, registry.REJECTED)


def test_read_gate_decision_errors_name_the_file(tmp_path):
    with pytest.raises(kfp_io.ArtifactError, match="decision.json"):
        kfp_io.read_gate_decision(tmp_path)
    (tmp_path / "decision.json").write_text("not json")
    with pytest.raises(kfp_io.ArtifactError, match="not valid JSON"):
        kfp_io.read_gate_decision(tmp_path)
    (tmp_path / "decision.json").write_text(json.dumps({"decision": "approved", "version": "3"}))
    assert kfp_io.read_gate_decision(tmp_path)["version"] == "3"


def test_run_component_runs_the_stage_under_the_parent_run_and_publishes(tmp_path, monkeypatch):
    """The whole component path with a small stage: parent run in the env, outputs, metrics."""
    import os

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    params_yaml = yaml.safe_dump(yaml.safe_load(SMOKE_YAML))
    run_id = kfp_io.open_pipeline_run(params_yaml, [])
    report = artifact(Dataset, tmp_path / "report")
    metrics = Metrics(uri=str(tmp_path / "metrics"), name="metrics")
    seen = {}

    def execute(stage, params, **kwargs):
        seen.update(stage=stage, kwargs=kwargs, run_id=os.environ.get("MLFLOW_RUN_ID"))
        out = Path(params.paths.workdir) / "reports" / "validate"
        out.mkdir(parents=True, exist_ok=True)
        (out / "validation.json").write_text('{"ok": true}')
        return {"videos": 12, "quarantined": 0, "ratio": 0.25}

    summary = json.loads(
        kfp_io.run_component(
            "validate",
            execute,
            params_yaml,
            [],
            run_id,
            outputs={"validate_report": report},
            metrics=metrics,
            stage_kwargs={"strict": True},
        )
    )
    assert summary == {"videos": 12, "quarantined": 0, "ratio": 0.25}
    assert seen == {"stage": "validate", "kwargs": {"strict": True}, "run_id": run_id}
    assert "MLFLOW_RUN_ID" not in os.environ, "the parent run id does not leak out of the component"
    assert json.loads((tmp_path / "report" / "validation.json").read_text()) == {"ok": True}
    assert metrics.metadata["ratio"] == 0.25
    # Cached stages run without MLflow: the stage gets track=False, nothing is logged yet.
    kfp_io.run_component("validate", execute, params_yaml, [], outputs={"validate_report": report}, track=False)
    assert seen["kwargs"] == {"track": False} and seen["run_id"] is None


def test_parent_run_is_found_by_the_kfp_run_and_closed_with_its_final_state(tmp_path, monkeypatch):
    """open_run tags the parent run; log_stages records cached stages; the exit handler closes it."""
    import mlflow

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    params_yaml = yaml.safe_dump(yaml.safe_load(SMOKE_YAML))
    run_id = kfp_io.open_pipeline_run(params_yaml, [], kfp_run_id="kfp-run-1")
    report = tmp_path / "generate_report"
    report.mkdir()
    (report / "summary.json").write_text(json.dumps({"videos": 40, "seconds": 1.5}))
    logged = json.loads(kfp_io.log_stages(params_yaml, [], run_id, {"generate": artifact(Dataset, report)}))
    assert logged == {"generate": run_id}
    kfp_io.tag_gate_decision(params_yaml, [], run_id, "rejected")
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.metrics["generate.videos"] == 40
    assert run.data.tags[kfp_io.TAG_GATE_DECISION] == "rejected"
    (tmp_path / "empty_report").mkdir()
    with pytest.raises(kfp_io.ArtifactError, match="summary.json missing"):
        kfp_io.log_stages(params_yaml, [], run_id, {"validate": artifact(Dataset, tmp_path / "empty_report")})

    closed = json.loads(kfp_io.close_pipeline_run(params_yaml, [], "kfp-run-1", "FAILED", "extract-shards: OOMKilled"))
    assert closed == {"run_ids": [run_id], "closed": True, "status": "FAILED", "state": "FAILED", "recognised": True}
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags[kfp_io.TAG_KFP_STATE] == "FAILED"
    assert run.data.tags["latentanon.kfp_error"] == "extract-shards: OOMKilled"
    # A run whose open step never ran has nothing to close.
    assert json.loads(kfp_io.close_pipeline_run(params_yaml, [], "kfp-run-2", "SUCCEEDED"))["closed"] is False
    # A run injected by Kubeflow's MLflow integration is left to Kubeflow.
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    assert json.loads(kfp_io.close_pipeline_run(params_yaml, [], "kfp-run-1", "SUCCEEDED"))["closed"] is False


# What the exit handler receives, per runner: the KFP v2 backend driver passes the ML Metadata
# execution state of the exit DAG and an empty error object; kfp.local passes SUCCEEDED / FAILED.
FINAL_STATUSES = [
    ({"state": "COMPLETE", "error": {}}, "FINISHED"),
    ({"state": "CACHED", "error": {}}, "FINISHED"),
    ({"state": "FAILED", "error": {}}, "FAILED"),
    ({"state": "CANCELED", "error": {}}, "KILLED"),
    ({"state": "SUCCEEDED", "error": {}}, "FINISHED"),  # kfp.local
    ({"state": "FAILED", "error": {"code": 1, "message": "Task train failed."}}, "FAILED"),  # kfp.local
    ({"state": "CANCELLED"}, "KILLED"),  # the SDK's spelling
]


def _run_exit_handler(tmp_path, params_yaml: str, kfp_run_id: str, final_status: dict, params_uri: str = "") -> dict:
    """The close_run component's function run by KFP's own executor, as a pod runs it."""
    from components.tracking import close_run
    from kfp.dsl import executor

    output_file = tmp_path / f"executor_output_{kfp_run_id}.json"
    executor_input = {
        "inputs": {
            "parameterValues": {
                "params_yaml": params_yaml,
                "params_uri": params_uri,
                "overrides": [],
                "kfp_run_id": kfp_run_id,
                "status": {**final_status, "pipelineJobResourceName": "run-1", "pipelineTaskName": "exit-handler-1"},
            }
        },
        "outputs": {
            "parameters": {"Output": {"outputFile": str(tmp_path / f"out_{kfp_run_id}")}},
            "outputFile": str(output_file),
        },  # the executor writes its output JSON here
    }
    executor.Executor(executor_input, close_run.python_func).execute()
    return json.loads(json.loads(output_file.read_text())["parameterValues"]["Output"])


def test_exit_handler_closes_the_run_for_every_runners_final_state(tmp_path, monkeypatch, caplog):
    """Backend-shaped and kfp.local-shaped final statuses close the run with the right status;
    states that are not final, or that nobody documents, close it as FAILED with a warning."""
    import mlflow

    from latentanon.tracking import kfp_runs

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    params_yaml = yaml.safe_dump(yaml.safe_load(SMOKE_YAML))
    client = mlflow.MlflowClient()
    for number, (final_status, mlflow_status) in enumerate(FINAL_STATUSES):
        kfp_run_id = f"kfp-{number}"
        run_id = kfp_io.open_pipeline_run(params_yaml, [], kfp_run_id=kfp_run_id)
        closed = _run_exit_handler(tmp_path, params_yaml, kfp_run_id, final_status)
        assert closed["closed"] is True and closed["recognised"] is True, final_status
        assert closed["status"] == mlflow_status, final_status
        run = client.get_run(run_id)
        assert run.info.status == mlflow_status, final_status
        assert run.data.tags[kfp_io.TAG_KFP_STATE] == final_status["state"]
        assert kfp_runs.TAG_KFP_STATE_UNRECOGNISED not in run.data.tags
        message = (final_status.get("error") or {}).get("message")
        assert run.data.tags.get(kfp_runs.TAG_KFP_ERROR) == message, "an empty error object sets no error tag"
    for state in ["RUNNING", "NEW", "UNKNOWN", "EXPLODED", ""]:
        kfp_run_id = f"kfp-odd-{state.lower()}"
        run_id = kfp_io.open_pipeline_run(params_yaml, [], kfp_run_id=kfp_run_id)
        caplog.clear()
        with caplog.at_level("WARNING", logger=kfp_runs.__name__):
            closed = _run_exit_handler(tmp_path, params_yaml, kfp_run_id, {"state": state, "error": {}})
        assert closed["closed"] is True and closed["recognised"] is False, state
        assert any("closing the MLflow run as FAILED" in r.getMessage() for r in caplog.records), state
        run = client.get_run(run_id)
        assert run.info.status == "FAILED", f"{state!r}: an outcome nobody vouches for never reads as a success"
        assert run.data.tags[kfp_runs.TAG_KFP_STATE_UNRECOGNISED] == "true"


def test_exit_handler_reads_the_base_params_by_uri(tmp_path, monkeypatch):
    """A run whose base params came by URI is closed in the tracking store that file names."""
    import mlflow

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tree = yaml.safe_load(SMOKE_YAML)
    tree["tracking"]["tracking_uri"] = f"sqlite:///{tmp_path / 'only-the-base-file-knows.db'}"
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tree))
    run_id = kfp_io.open_pipeline_run(base.read_text(), [], kfp_run_id="kfp-by-uri")
    closed = _run_exit_handler(tmp_path, "", "kfp-by-uri", {"state": "COMPLETE", "error": {}}, params_uri=str(base))
    assert closed["closed"] is True and closed["status"] == "FINISHED"
    run = mlflow.MlflowClient(tracking_uri=tree["tracking"]["tracking_uri"]).get_run(run_id)
    assert run.info.status == "FINISHED"


def test_every_ml_metadata_execution_state_is_mapped():
    """The backend's states are ml_metadata's Execution.State names; each one is either final or open."""
    from latentanon.tracking import kfp_runs

    execution_states = {"UNKNOWN", "NEW", "RUNNING", "COMPLETE", "FAILED", "CACHED", "CANCELED"}
    assert set(kfp_runs.MLMD_FINAL_STATES) | set(kfp_runs.MLMD_OPEN_STATES) == execution_states
    assert not set(kfp_runs.MLMD_FINAL_STATES) & set(kfp_runs.MLMD_OPEN_STATES)


def test_the_pipeline_run_life_cycle_never_imports_the_kubeflow_glue_or_the_stages():
    import ast

    for path in [REPO / "src" / "latentanon" / "tracking" / "kfp_runs.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith(("latentanon.kfp_io", "latentanon.stages", "latentanon.cli")), (
                    f"{path.name} imports {name}: tracking sits below them"
                )
