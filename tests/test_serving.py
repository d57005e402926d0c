"""The registered method serves with ``mlflow models serve`` where latentanon is not installed: the
logged pyfunc carries the package as a code path and lists only third-party requirements."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest

from latentanon.config import Layout, params_from_dict
from latentanon.tracking import registry
from latentanon.tracking.pyfunc import PROJECT_PACKAGE


def _register_leace(tmp_path):
    """A deterministic method (LEACE) registered as a candidate; returns it, its features and the registration."""
    from latentanon.methods.registry import create_method
    from test_tuning import make_feature_sets

    params = params_from_dict({"paths": {"workdir": str(tmp_path)}})
    layout = Layout.from_params(params)
    sets = make_feature_sets(dim=16, per_split={"train": 8, "val": 4, "test": 4})
    method = create_method("leace").fit(sets, seed=3)
    method.save(layout.method_dir)
    return method, sets, registry.register_candidate(params.tracked(), layout)


def test_logged_model_carries_the_package_and_no_requirement_on_it(tmp_path):
    _, _, registered = _register_leace(tmp_path)
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{registered['model_name']}/{registered['version']}", dst_path=str(tmp_path / "download")
        )
    )
    code = local / "code" / PROJECT_PACKAGE
    assert (code / "__init__.py").is_file() and (code / "tracking" / "pyfunc.py").is_file()
    assert not list(code.rglob("__pycache__")), "bytecode of the training machine travels with the model"
    requirements = (local / "requirements.txt").read_text().splitlines()
    names = {line.split("==")[0].strip().lower() for line in requirements if line and not line.startswith("#")}
    assert PROJECT_PACKAGE not in names, requirements
    assert {"torch", "numpy", "safetensors"} <= names
    import yaml

    assert yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]["code"] == "code"


def _environment_without_the_project(root: Path) -> Path:
    """A virtual environment that sees the installed third-party packages but not latentanon
    (neither the checkout nor its editable install: .pth files of the shared site-packages are not
    processed when that folder is reached through a .pth line). Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # mlflow starts the scoring server as `uvicorn ...` from PATH: make it this environment's.
    Path(root, "bin", "uvicorn").write_text(f'#!/bin/sh\nexec "{python}" -m uvicorn "$@"\n')
    Path(root, "bin", "uvicorn").chmod(0o755)
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_champion_serves_with_mlflow_models_serve_without_the_checkout(tmp_path):
    method, sets, registered = _register_leace(tmp_path)
    name = registered["model_name"]
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", registered["version"])

    python = _environment_without_the_project(tmp_path / "env")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print(u.find_spec('latentanon'), u.find_spec('mlflow') is not None)",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.split() == ["None", "True"], probe

    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            str(python),
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{name}@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-4000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as ping:
                    if ping.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-4000:]
            time.sleep(1)
        sequence = sets["actions"].kind("clips")[0]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": sequence.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        predicted = np.asarray(answer["predictions"], dtype=np.float32)
        np.testing.assert_allclose(predicted, method.transform_sequence(sequence), rtol=1e-5, atol=1e-6)
    finally:
        # the server's process group: mlflow and the uvicorn it started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
