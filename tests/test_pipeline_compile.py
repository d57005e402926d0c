"""The compiled pipeline YAML is committed; recompiling must give the same spec (golden test)."""
from __future__ import annotations

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
    done = subprocess.run([sys.executable, str(REPO / "pipelines" / "compile.py"), "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert load_documents(out) == load_documents(GOLDEN)


def _tasks(spec: dict) -> dict:
    """Every task of the pipeline, nested sub-DAGs (loops, conditions) included."""
    found = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def test_structure_fan_outs_condition_and_gpus(compiled):
    spec, platform = compiled
    tasks = _tasks(spec)
    loops = {t["taskInfo"]["name"]: t for t in tasks.values() if "parameterIterator" in t}
    assert set(loops) == {"extract-fan-out", "tune-fan-out"}
    body = {name: list(spec["components"][t["componentRef"]["name"]]["dag"]["tasks"]) for name, t in loops.items()}
    assert body == {"extract-fan-out": ["extract-shards"], "tune-fan-out": ["tune-trials"]}
    assert loops["extract-fan-out"]["parameterIterator"]["items"]["inputParameter"].endswith("extract-workers-Output")
    branches = {t["taskInfo"]["name"]: t for t in tasks.values() if "condition" in t.get("triggerPolicy", {})}
    assert set(branches) == {"gate-approved"}
    approved = branches["gate-approved"]
    assert approved["triggerPolicy"]["condition"].endswith("['pipelinechannel--gate-Output'] == 'approved'")
    assert list(spec["components"][approved["componentRef"]["name"]]["dag"]["tasks"]) == ["promote"]
    assert "promote" in tasks and "finalize-extract" in tasks and "tune-select" in tasks
    executors = spec["deploymentSpec"]["executors"]
    gpu_tasks = {name for name, e in executors.items()
                 if e["container"].get("resources", {}).get("accelerator", {}).get("resourceType") == "nvidia.com/gpu"}
    assert {"exec-extract-shards", "exec-train"} <= gpu_tasks
    assert "exec-gate" not in gpu_tasks
    from components.image import PROJECT_IMAGE

    assert {e["container"]["image"] for e in executors.values()} == {PROJECT_IMAGE}
    for executor in executors.values():
        resources = executor["container"].get("resources", {})
        assert resources.get("cpuLimit") and resources.get("memoryLimit"), executor["container"]["args"]


def test_secrets_config_and_caching_in_the_platform_spec(compiled):
    spec, platform = compiled
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-generate", "exec-extract-shards", "exec-train", "exec-gate", "exec-promote"):
        config = executors[name]
        secrets = {s["secretName"]: s for s in config["secretAsEnv"]}
        assert "latentanon-s3" in secrets, name
        envs = {m["envVar"] for m in secrets["latentanon-s3"]["keyToEnv"]}
        assert envs == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert {c["configMapName"] for c in config["configMapAsEnv"]} == {"latentanon-env"}
    assert any(t.get("key") == "nvidia.com/gpu" for t in executors["exec-train"]["tolerations"])
    optuna = {s["secretName"]: s for s in executors["exec-tune-trials"]["secretAsEnv"]}["latentanon-optuna"]
    assert optuna["optional"] is True
    tasks = _tasks(spec)
    for name in ("open-run", "gate", "promote", "close-run"):
        assert tasks[name].get("cachingOptions", {}).get("enableCache") in (None, False), name
        assert not tasks[name].get("cachingOptions", {}).get("enableCache", False)
    assert tasks["train"]["cachingOptions"]["enableCache"] is True


def test_no_credentials_in_the_compiled_yaml():
    text = GOLDEN.read_text().lower()
    for needle in ("aws_secret_access_key:", "password=", "minioadmin", "postgresql://", "secret_access_key="):
        assert needle not in text, needle


def test_cpu_only_build_requests_no_gpus(tmp_path):
    from pipelines.compile import compile_pipeline

    spec, platform = load_documents(compile_pipeline(tmp_path / "cpu.yaml", gpus_per_task=0))
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "accelerator" not in executor["container"].get("resources", {})
    for config in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        assert not config.get("tolerations")
    with pytest.raises(ValueError, match="gpus_per_task"):
        compile_pipeline(tmp_path / "bad.yaml", gpus_per_task=-1)
