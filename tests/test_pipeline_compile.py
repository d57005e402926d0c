"""The compiled pipeline YAML is committed; recompiling must give the same spec (golden test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # components/ and pipelines/ live at the repo root, not in src/
    sys.path.insert(0, str(REPO))

GOLDEN = REPO / "pipelines" / "latentanon_pipeline.yaml"
RECOMPILE_HINT = "pipelines/latentanon_pipeline.yaml is stale: run `python -m pipelines.compile` and commit it"


def load_documents(path: Path) -> list[dict]:
    """Pipeline spec and platform spec, without the field that only names the SDK version."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for document in documents:
        document.pop("sdkVersion", None)
    return documents


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> list[dict]:
    from pipelines.compile import compile_pipeline

    out = compile_pipeline(tmp_path_factory.mktemp("compiled") / "pipeline.yaml")
    return load_documents(out)


def test_committed_yaml_matches_a_fresh_compile(compiled):
    assert GOLDEN.is_file(), RECOMPILE_HINT
    assert load_documents(GOLDEN) == compiled, RECOMPILE_HINT


def test_golden_comparison_ignores_only_the_sdk_version(compiled, tmp_path):
    text = GOLDEN.read_text()
    assert "sdkVersion:" in text
    changed = tmp_path / "changed.yaml"
    changed.write_text(text.replace("sdkVersion: kfp-", "sdkVersion: kfp-0.0.0-not-"))
    assert load_documents(changed) == compiled
    changed.write_text(text.replace("nvidia.com/gpu", "amd.com/gpu"))
    assert load_documents(changed) != compiled


@pytest.mark.slow
def test_compile_command_runs_as_a_script(tmp_path):
    out = tmp_path / "as-script.yaml"
    done = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "compile.py"), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert load_documents(out) == load_documents(GOLDEN)


def _tasks(spec: dict) -> dict:
    """Every task of the pipeline, nested sub-DAGs (exit handler, loops, conditions) included."""
    found = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def _group(spec: dict, tasks: dict, name: str) -> dict:
    return spec["components"][tasks[name]["componentRef"]["name"]]["dag"]["tasks"]


def test_structure_exit_handler_fan_outs_condition_and_gpus(compiled):
    spec, platform = compiled
    tasks = _tasks(spec)
    # Everything runs inside the exit handler; close-run runs after it, whatever happened.
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"close-run", "exit-handler-1"}
    closer = root["close-run"]
    assert closer["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert closer["dependentTasks"] == ["exit-handler-1"]
    assert closer["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
    assert tasks["exit-handler-1"]["taskInfo"]["name"] == "latentanon-run"
    loops = {t["taskInfo"]["name"]: t for t in tasks.values() if "parameterIterator" in t}
    assert set(loops) == {"extract-fan-out", "tune-fan-out"}
    body = {name: list(spec["components"][t["componentRef"]["name"]]["dag"]["tasks"]) for name, t in loops.items()}
    assert body == {"extract-fan-out": ["extract-shards"], "tune-fan-out": ["tune-trials"]}
    assert loops["extract-fan-out"]["parameterIterator"]["items"]["inputParameter"].endswith("extract-workers-Output")
    # Bounded fan-out, whatever worker count a run asks for.
    from pipelines.latentanon_pipeline import (
        MAX_GPUS_AT_ONCE,
        MAX_PARALLEL_EXTRACT,
        MAX_PARALLEL_TUNE,
        extract_parallelism,
    )

    # The committed build holds one GPU per extract worker: the GPUs held at once are bounded too.
    assert loops["extract-fan-out"]["iteratorPolicy"] == {"parallelismLimit": extract_parallelism(1)}
    assert extract_parallelism(1) * 1 <= MAX_GPUS_AT_ONCE and extract_parallelism(1) <= MAX_PARALLEL_EXTRACT
    assert loops["tune-fan-out"]["iteratorPolicy"] == {"parallelismLimit": MAX_PARALLEL_TUNE}
    branches = {t["taskInfo"]["name"]: t for t in tasks.values() if "condition" in t.get("triggerPolicy", {})}
    assert set(branches) == {"gate-approved"}
    approved = branches["gate-approved"]
    assert approved["triggerPolicy"]["condition"].endswith("['pipelinechannel--gate-Output'] == 'approved'")
    assert list(spec["components"][approved["componentRef"]["name"]]["dag"]["tasks"]) == ["promote"]
    assert "promote" in tasks and "finalize-extract" in tasks and "tune-select" in tasks
    executors = spec["deploymentSpec"]["executors"]
    gpu_tasks = {
        name
        for name, e in executors.items()
        if e["container"].get("resources", {}).get("accelerator", {}).get("resourceType") == "nvidia.com/gpu"
    }
    assert gpu_tasks == {"exec-pretrain-encoder", "exec-extract-shards", "exec-train"}
    from components.image import PROJECT_IMAGE, PROJECT_IMAGE_CUDA

    # GPU tasks run the CUDA image and ask for cuda explicitly (no silent CPU fallback).
    for name, executor in executors.items():
        assert executor["container"]["image"] == (PROJECT_IMAGE_CUDA if name in gpu_tasks else PROJECT_IMAGE), name
        resources = executor["container"].get("resources", {})
        assert resources.get("cpuLimit") and resources.get("memoryLimit"), executor["container"]["args"]
    device = {
        "pretrain-encoder": "pretrain_encoder.device=cuda",
        "extract-shards": "extract.device=cuda",
        "train": "train.device=cuda",
    }
    for task, setting in device.items():
        assert tasks[task]["inputs"]["parameters"]["overrides"]["runtimeValue"]["constant"] == [setting], task


def test_every_task_has_a_display_name_retries_where_it_talks_to_services(compiled):
    spec, platform = compiled
    tasks = _tasks(spec)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    leaves = {
        name: task
        for name, task in tasks.items()
        if "executorLabel" in spec["components"][task["componentRef"]["name"]]
    }
    assert len(leaves) >= 18
    for name, task in leaves.items():
        assert task["taskInfo"]["name"] != name, f"{name} has no display name"
    names = {t["taskInfo"]["name"] for t in tasks.values()}
    assert {
        "open MLflow run",
        "generate benchmark",
        "extract shards",
        "train method",
        "promotion gate",
        "close MLflow run",
    } <= names
    for name in (
        "open-run",
        "log-stages",
        "extract-shards",
        "finalize-extract",
        "tune-trials",
        "tune-select",
        "gate",
        "promote",
        "close-run",
        "pretrain-encoder",
        "train",
        "evaluate",
        "audit-bias",
    ):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] >= 1, name
    # Every task pod carries the label the NetworkPolicies of k8s/ select.
    for name, config in executors.items():
        assert config["podMetadata"]["labels"] == {"app.kubernetes.io/part-of": "latentanon"}, name
    assert set(executors) == set(spec["deploymentSpec"]["executors"])


# Tasks a re-run with the same inputs must take from KFP's cache.
CONTENT_CACHED = (
    "resolve-params",
    "generate",
    "validate",
    "pretrain-encoder",
    "extract-workers",
    "extract-shards",
    "finalize-extract",
)


def _upstream_parameter_sources(spec: dict, tasks: dict, name: str) -> set:
    """Where a task's parameters come from: pipeline inputs, constants, task outputs (loop items resolved)."""
    sources = set()
    for value in tasks[name]["inputs"].get("parameters", {}).values():
        if "runtimeValue" in value:
            sources.add("constant")
        elif "taskOutputParameter" in value:
            sources.add(value["taskOutputParameter"]["producerTask"])
        elif "componentInputParameter" in value:
            sources.add(value["componentInputParameter"])
        elif "taskFinalStatus" in value:
            sources.add("final-status")
    return sources


def test_content_cached_tasks_take_no_per_run_input(compiled):
    spec, platform = compiled
    tasks = _tasks(spec)
    pipeline_text = yaml.safe_dump(spec)
    for name in CONTENT_CACHED:
        task = tasks[name]
        assert task["cachingOptions"]["enableCache"] is True, name
        text = yaml.safe_dump(task)
        assert "mlflow_run_id" not in text and "open-run" not in text, f"{name} takes the MLflow run id"
        assert "{{$" not in text, f"{name} takes a per-run placeholder"
        producers = {s for s in _upstream_parameter_sources(spec, tasks, name) if s not in ("constant",)}
        for producer in producers:
            assert (
                producer in CONTENT_CACHED
                or producer.startswith("pipelinechannel--")
                or producer in spec["root"]["inputDefinitions"]["parameters"]
            ), f"{name} <- {producer}"
        for artifact in task["inputs"].get("artifacts", {}).values():
            producer = artifact.get("taskOutputArtifact", {}).get("producerTask")
            if producer in tasks and "parameterIterator" in tasks[producer]:  # a loop: its body produced it
                assert set(_group(spec, tasks, producer)) <= set(CONTENT_CACHED), f"{name} <- {producer}"
                continue
            assert producer is None or producer in CONTENT_CACHED, f"{name} <- artifact of {producer}"
    # The per-run values exist, but only where they belong.
    assert "{{$.pipeline_job_uuid}}" in pipeline_text or "pipeline_job_uuid" in pipeline_text
    for name in ("open-run", "close-run"):
        assert "kfp_run_id" in tasks[name]["inputs"]["parameters"], name
    for name in ("open-run", "log-stages", "gate", "promote", "close-run"):
        assert tasks[name]["cachingOptions"].get("enableCache", False) is False, name
    # The components behind them declare no run id either (the check above cannot be dodged by a
    # constant run id).
    for name in ("generate", "validate", "pretrain-encoder", "extract-shards", "finalize-extract"):
        inputs = spec["components"][tasks[name]["componentRef"]["name"]]["inputDefinitions"]["parameters"]
        assert "mlflow_run_id" not in inputs, name


def test_run_form_has_typed_parameters_with_the_params_defaults(compiled):
    spec, _ = compiled
    from latentanon import kfp_io

    inputs = spec["root"]["inputDefinitions"]["parameters"]
    defaults = kfp_io.knob_defaults((REPO / "params.yaml").read_text())
    kinds = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}
    for knob, value in defaults.items():
        assert inputs[knob]["parameterType"] == kinds[type(value)], knob
        assert inputs[knob]["defaultValue"] == value, knob
        assert inputs[knob].get("description"), f"{knob} has no help text in the run form"
    assert inputs["extract_workers_count"]["parameterType"] == "NUMBER_INTEGER"
    assert inputs["params_yaml"]["defaultValue"] == ""
    assert inputs["params_uri"]["defaultValue"] == "" and inputs["params_uri"]["parameterType"] == "STRING"


def test_resolve_task_gets_the_form_defaults_and_the_base_uri_and_reports_provenance(compiled):
    """The run form's defaults reach resolve_params as a compile-time constant (a knob left at its
    default keeps the base's value); the base URI reaches it and the exit handler; the provenance
    is a Markdown artifact; the resolve pod holds the S3 key the base file is read with."""
    spec, platform = compiled
    from latentanon import kfp_io

    tasks = _tasks(spec)
    resolve = tasks["resolve-params"]["inputs"]["parameters"]
    form_defaults = json.loads(resolve["form_defaults"]["runtimeValue"]["constant"])
    assert form_defaults == kfp_io.knob_defaults((REPO / "params.yaml").read_text())
    assert resolve["params_uri"]["componentInputParameter"].endswith("params_uri")
    assert tasks["close-run"]["inputs"]["parameters"]["params_uri"]["componentInputParameter"].endswith("params_uri")
    artifacts = spec["components"]["comp-resolve-params"]["outputDefinitions"]["artifacts"]
    assert artifacts["run_parameters"]["artifactType"]["schemaTitle"] == "system.Markdown"
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "latentanon-s3-params-read" in {s["secretName"] for s in executors["exec-resolve-params"]["secretAsEnv"]}


def test_report_and_plots_are_rendered_artifacts(compiled):
    spec, _ = compiled
    components = spec["components"]

    def outputs(component: str) -> dict:
        return {
            k: v["artifactType"]["schemaTitle"]
            for k, v in components[component]["outputDefinitions"].get("artifacts", {}).items()
        }

    assert outputs("comp-audit-bias")["report"] == "system.Markdown"
    for component in ("comp-pretrain-encoder", "comp-tune-select", "comp-train", "comp-evaluate", "comp-audit-bias"):
        assert outputs(component)["plots"] == "system.HTML", component
    for component in ("comp-pretrain-encoder", "comp-train", "comp-evaluate", "comp-audit-bias"):
        assert outputs(component)["metrics"] == "system.Metrics", component


def test_compiled_yaml_needs_no_newer_backend_than_declared(compiled):
    from pipelines import backend

    assert backend.unsupported_fields(compiled) == {}, (
        f"the compiled pipeline needs more than KFP backend {backend.MIN_KFP_BACKEND}"
    )
    docs = (REPO / "docs" / "kubeflow.md").read_text()
    assert f"**{backend.MIN_KFP_BACKEND}**" in docs, "docs/kubeflow.md states another minimum backend"


def test_backend_check_catches_fields_newer_than_the_minimum(compiled):
    import copy

    from pipelines import backend

    spec, platform = copy.deepcopy(compiled)
    assert "optional" in backend.unsupported_fields([spec, platform], minimum="2.14.0")
    assert "isArtifactList" in backend.unsupported_fields([spec, platform], minimum="2.13.0")
    spec["root"]["dag"]["tasks"]["close-run"]["retryPolicy"] = {"maxRetryCount": 1, "policy": "OnError"}
    problems = backend.unsupported_fields([spec, platform])
    assert list(problems) == ["policy"] and "no released backend" in problems["policy"]
    # User-chosen names (tasks, inputs, labels) are not fields.
    assert "close-run" not in backend.spec_fields([spec, platform])
    assert "app.kubernetes.io/part-of" not in backend.spec_fields([spec, platform])


def test_secrets_config_and_caching_in_the_platform_spec(compiled):
    spec, platform = compiled
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in (
        "exec-generate",
        "exec-extract-shards",
        "exec-train",
        "exec-gate",
        "exec-promote",
        "exec-open-run",
        "exec-close-run",
        "exec-log-stages",
    ):
        config = executors[name]
        assert {c["configMapName"] for c in config["configMapAsEnv"]} == {"latentanon-env"}
    assert any(t.get("key") == "nvidia.com/gpu" for t in executors["exec-train"]["tolerations"])
    optuna = {s["secretName"]: s for s in executors["exec-tune-trials"]["secretAsEnv"]}["latentanon-optuna"]
    assert optuna["optional"] is True


# Least privilege: the object-store identities (Secret -> the key variables it fills) each task holds.
FEATURES_KEYS = ("LATENTANON_S3_FEATURES_ACCESS_KEY_ID", "LATENTANON_S3_FEATURES_SECRET_ACCESS_KEY")
RELEASE_KEYS = ("LATENTANON_S3_RELEASE_ACCESS_KEY_ID", "LATENTANON_S3_RELEASE_SECRET_ACCESS_KEY")
DEFAULT_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
FEATURES_READER = {"latentanon-s3-features-read": FEATURES_KEYS}
ANALYST = {**FEATURES_READER, "latentanon-s3-release-read": RELEASE_KEYS}
OBJECT_STORE_ROLES = {
    "exec-resolve-params": {"latentanon-s3-params-read": DEFAULT_KEYS},
    "exec-close-run": {"latentanon-s3-params-read": DEFAULT_KEYS},
    "exec-extract-shards": {"latentanon-s3-features-write": FEATURES_KEYS},
    "exec-finalize-extract": {"latentanon-s3-features-write": FEATURES_KEYS},
    "exec-tune-trials": FEATURES_READER,
    "exec-tune-select": FEATURES_READER,
    "exec-train": {**FEATURES_READER, "latentanon-s3-release-write": RELEASE_KEYS},
    "exec-evaluate": ANALYST,
    "exec-audit-bias": ANALYST,
    "exec-gate": {"latentanon-s3-release-write": RELEASE_KEYS},
}


@pytest.mark.parametrize("gpus", [1, 0])
def test_each_task_holds_exactly_the_object_store_identities_of_its_role(compiled, gpus, tmp_path):
    """Every task mounts the S3 Secrets of its role and no other (the rest none: their artifacts
    move through the launcher, whose pipeline-root identity is in no task's environment); each
    Secret fills its store's key variables, so one task can hold two stores' keys."""
    from pipelines.compile import compile_pipeline

    if gpus:
        platform = compiled[1]
    else:
        platform = load_documents(compile_pipeline(tmp_path / "cpu.yaml", gpus_per_task=0))[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(OBJECT_STORE_ROLES) <= set(executors)
    for name, config in executors.items():
        held = {
            s["secretName"]: tuple(sorted(m["envVar"] for m in s["keyToEnv"]))
            for s in config.get("secretAsEnv", [])
            if s["secretName"].startswith("latentanon-s3")
        }
        expected = {secret: tuple(sorted(envs)) for secret, envs in OBJECT_STORE_ROLES.get(name, {}).items()}
        assert held == expected, f"{name} holds {held}"
    mounted = [s["secretName"] for c in executors.values() for s in c.get("secretAsEnv", [])]
    assert "latentanon-s3-pipeline-root" not in mounted and "latentanon-s3" not in mounted


def test_store_key_variables_are_the_ones_the_store_reads():
    from pipelines import latentanon_pipeline as pipeline

    from latentanon.features.s3 import scope_variable

    for scope, keys in (("FEATURES", FEATURES_KEYS), ("RELEASE", RELEASE_KEYS)):
        assert keys == (scope_variable(scope, "ACCESS_KEY_ID"), scope_variable(scope, "SECRET_ACCESS_KEY"))
        assert pipeline.S3_KEY_ENV[scope] == keys


def test_no_credentials_in_the_compiled_yaml():
    text = GOLDEN.read_text().lower()
    for needle in ("aws_secret_access_key:", "password=", "minioadmin", "postgresql://", "secret_access_key="):
        assert needle not in text, needle


def test_cpu_only_build_requests_no_gpus_and_runs_the_cpu_image(tmp_path):
    from components.image import PROJECT_IMAGE
    from pipelines.compile import compile_pipeline

    spec, platform = load_documents(compile_pipeline(tmp_path / "cpu.yaml", gpus_per_task=0))
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "accelerator" not in executor["container"].get("resources", {})
        assert executor["container"]["image"] == PROJECT_IMAGE
    for config in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        assert not config.get("tolerations")
    assert "device=cuda" not in yaml.safe_dump(spec)
    with pytest.raises(ValueError, match="gpus_per_task"):
        compile_pipeline(tmp_path / "bad.yaml", gpus_per_task=-1)
    from pipelines.latentanon_pipeline import MAX_GPUS_AT_ONCE, MAX_PARALLEL_EXTRACT, extract_parallelism

    loop = next(t for t in _tasks(spec).values() if t.get("taskInfo", {}).get("name") == "extract-fan-out")
    assert loop["iteratorPolicy"] == {"parallelismLimit": MAX_PARALLEL_EXTRACT}, "CPU workers are bounded alone"
    assert [extract_parallelism(g) for g in (0, 1, 2, MAX_GPUS_AT_ONCE)] == [MAX_PARALLEL_EXTRACT, 4, 2, 1]
    with pytest.raises(ValueError, match="MAX_GPUS_AT_ONCE"):
        extract_parallelism(MAX_GPUS_AT_ONCE + 1)


def test_scratch_volumes_are_bounded_per_kind_of_task(compiled):
    """The v2 spec cannot request ephemeral storage; the scratch emptyDir carries a sizeLimit."""
    from pipelines.latentanon_pipeline import HEAVY, LIGHT, MEDIUM, SCRATCH_LIMIT

    _, platform = compiled
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    limits = {
        name: [m.get("sizeLimit") for m in config.get("emptyDirMounts", [])] for name, config in executors.items()
    }
    assert limits["exec-extract-shards"] == [SCRATCH_LIMIT[HEAVY]] and limits["exec-train"] == [SCRATCH_LIMIT[HEAVY]]
    assert limits["exec-generate"] == [SCRATCH_LIMIT[MEDIUM]] and limits["exec-gate"] == [SCRATCH_LIMIT[MEDIUM]]
    assert limits["exec-log-stages"] == [SCRATCH_LIMIT[LIGHT]]
    assert all(None not in values for values in limits.values()), f"a scratch volume without a limit: {limits}"
    assert sum(bool(values) for values in limits.values()) >= 12, "the stage tasks all get a bounded scratch"


def test_gate_receives_the_anonymized_store_and_hands_on_the_marked_one(compiled):
    spec, _ = compiled
    tasks = _tasks(spec)
    gate = tasks["gate"]
    source = gate["inputs"]["artifacts"]["anonymized"]["taskOutputArtifact"]
    assert source == {"producerTask": "train", "outputArtifactKey": "anonymized"}
    outputs = spec["components"][gate["componentRef"]["name"]]["outputDefinitions"]["artifacts"]
    assert {"gate_report", "released_store"} <= set(outputs)


# The oldest supported backend's protos, installed beside the venv's packages by `make install`.
OLDEST_PROTOS = Path(sys.prefix) / "backend-protos" / "oldest"
PROTOS = {"oldest": OLDEST_PROTOS, "newest": None}  # None: the installed (requirements.lock) protos


def _proto_check(pipeline_yaml: Path, which: str) -> dict:
    from pipelines.protos import check

    if which == "oldest":
        assert OLDEST_PROTOS.is_dir(), f"{OLDEST_PROTOS} is missing: `make install` installs backend-protos.lock there"
    return check(pipeline_yaml, PROTOS[which])


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_compiled_yaml_parses_strictly_with_each_supported_backends_protos(which, tmp_path):
    """Every field of the committed YAML is one the pipeline-spec and kfp-kubernetes protos of the
    oldest (backend-protos.lock) and the newest (requirements.lock) supported backend define, and
    the parse is strict: an unknown field is refused at the pipeline and the executor level."""
    from pipelines.backend import MIN_KFP_BACKEND

    result = _proto_check(GOLDEN, which)
    assert result["problems"] == [], f"{which} backend's protos refuse the committed YAML"
    assert set(result["versions"]) == {"kfp-pipeline-spec", "kfp-kubernetes"}
    for package, shown in result["versions"].items():
        version = tuple(int(x) for x in shown.split(".")[:2])
        assert version >= tuple(int(x) for x in MIN_KFP_BACKEND.split(".")[:2]), (package, shown)
    pipeline, platform = [d for d in yaml.safe_load_all(GOLDEN.read_text()) if d]
    pipeline["bogusField"] = 1
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors["exec-train"]["bogusExecutorField"] = 1
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all([pipeline, platform]))
    problems = _proto_check(broken, which)["problems"]
    assert len(problems) == 2, problems
    assert problems[0].startswith("pipeline spec:") and "bogusField" in problems[0]
    assert problems[1].startswith("executor exec-train:") and "bogusExecutorField" in problems[1]


def test_a_field_only_the_newest_backend_knows_fails_only_against_the_oldest(tmp_path):
    """kfp-kubernetes 2.17 added a container security context to the executor config; 2.15's
    protos do not define it, so a YAML using it parses with the newest and not the oldest."""
    pipeline, platform = [d for d in yaml.safe_load_all(GOLDEN.read_text()) if d]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors["exec-gate"]["securityContext"] = {"runAsUser": 1000}
    newer = tmp_path / "newer.yaml"
    newer.write_text(yaml.safe_dump_all([pipeline, platform]))
    assert _proto_check(newer, "newest")["problems"] == []
    problems = _proto_check(newer, "oldest")["problems"]
    assert len(problems) == 1 and problems[0].startswith("executor exec-gate:") and "securityContext" in problems[0]


def test_the_oldest_protos_pins_follow_the_declared_minimum_backend():
    from pipelines.backend import MIN_KFP_BACKEND

    pins = dict(
        line.split("==")
        for line in (REPO / "backend-protos.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert pins == {"kfp-pipeline-spec": MIN_KFP_BACKEND, "kfp-kubernetes": MIN_KFP_BACKEND}
    assert _proto_check(GOLDEN, "oldest")["versions"] == pins, "the installed oldest protos differ from the lock"


def test_the_proto_check_names_the_file_and_a_missing_protos_folder(tmp_path):
    from pipelines.protos import check

    not_yaml = tmp_path / "not-a-pipeline.yaml"
    not_yaml.write_text("- just\n- a list\n")
    with pytest.raises(RuntimeError, match="not-a-pipeline.yaml: not a compiled pipeline"):
        check(not_yaml)
    with pytest.raises(RuntimeError, match="are the protos installed"):
        check(GOLDEN, tmp_path / "nothing-here")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.protos", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2 and "missing.yaml" in done.stderr


CPU_DIGEST = "ghcr.io/latentanon/latentanon@sha256:" + "a" * 64
CUDA_DIGEST = "ghcr.io/latentanon/latentanon@sha256:" + "b" * 64


def test_release_build_names_every_container_by_digest(tmp_path):
    """KFP keys its cache on the image reference as text: a release build puts the digest on
    every container, CPU tasks on the CPU image and GPU tasks on the CUDA one."""
    from pipelines.compile import compile_pipeline, compiled_images

    out = compile_pipeline(tmp_path / "release.yaml", image=CPU_DIGEST, cuda_image=CUDA_DIGEST, release=True)
    assert compiled_images(out) == {CPU_DIGEST, CUDA_DIGEST}
    spec = load_documents(out)[0]
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-train"]["container"]["image"] == CUDA_DIGEST
    assert executors["exec-gate"]["container"]["image"] == CPU_DIGEST
    cpu_only = compile_pipeline(tmp_path / "cpu.yaml", gpus_per_task=0, image=CPU_DIGEST, release=True)
    assert compiled_images(cpu_only) == {CPU_DIGEST}


def test_a_tag_is_refused_for_a_release_build_and_warned_about_otherwise(tmp_path):
    from pipelines.compile import MutableImageError, compile_pipeline, is_pinned

    with pytest.raises(MutableImageError, match="not pinned by digest"):
        compile_pipeline(tmp_path / "tagged.yaml", image=CPU_DIGEST, release=True)  # CUDA image by tag
    assert not (tmp_path / "tagged.yaml").exists(), "a refused build leaves no YAML"
    with pytest.warns(UserWarning, match="reuses the old image's cached results"):
        compile_pipeline(tmp_path / "dev.yaml", gpus_per_task=0)
    assert not is_pinned("ghcr.io/latentanon/latentanon:0.1.0-cpu")
    assert not is_pinned("ghcr.io/latentanon/latentanon@sha256:" + "a" * 63)
    assert not is_pinned("ghcr.io/latentanon/latentanon@sha256:" + "A" * 64)
    assert is_pinned("localhost:5000/latentanon@sha256:" + "0" * 64)
    done = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "compile.py"), "--gpus", "0", "--release", "--output", "x.yaml"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "not pinned by digest" in done.stderr
    assert not (tmp_path / "x.yaml").exists()
