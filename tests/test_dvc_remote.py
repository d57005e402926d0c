"""A DVC remote on S3 (dvc-s3) against a moto S3 server on 127.0.0.1: push, lose everything, pull."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

BUCKET = "latentanon-dvc"
DVC = Path(sys.executable).with_name("dvc")


@pytest.fixture()
def s3_endpoint(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        boto3.session.Session().client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        # moto keeps its buckets per process: clear them so later tests start empty
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(reset, timeout=10) as response:
            response.read()
        server.stop()


def run(args: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_dvc_push_and_pull_through_s3_remote(tmp_path, s3_endpoint):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        # keep DVC's user, system and site state inside the test
        "DVC_GLOBAL_CONFIG_DIR": str(tmp_path / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(tmp_path / "dvc-system"),
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
        # credentials reach DVC only through the environment, never its config files
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("AWS_ENDPOINT_URL_S3", None)
    payload = np.random.default_rng(3).bytes(200_000)
    (repo / "features.bin").write_bytes(payload)

    run(["git", "init", "-q"], repo, env)
    run([DVC, "init", "-q"], repo, env)
    run([DVC, "add", "-q", "features.bin"], repo, env)
    run([DVC, "remote", "add", "-d", "store", f"s3://{BUCKET}/dvcstore"], repo, env)
    run([DVC, "remote", "modify", "store", "endpointurl", s3_endpoint], repo, env)
    run([DVC, "push", "-q"], repo, env)

    config = (repo / ".dvc" / "config").read_text()
    assert s3_endpoint in config and "testing" not in config
    stored = (
        boto3.session.Session()
        .client("s3", endpoint_url=s3_endpoint)
        .list_objects_v2(Bucket=BUCKET, Prefix="dvcstore/")
    )
    assert [item["Size"] for item in stored.get("Contents", [])] == [len(payload)]

    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / "features.bin").unlink()
    run([DVC, "pull", "-q"], repo, env)
    assert (repo / "features.bin").read_bytes() == payload
