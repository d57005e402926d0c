"""The trained method is a DVC model artifact: dvc's API (and GTO-style registries on top of it)
lists it and resolves a version tag to its path."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NAME = "latentanon-aam"


def test_dvc_yaml_declares_the_model_artifact_at_the_train_stage_output():
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        artifact = repo.artifacts.read()["dvc.yaml"][NAME]
    assert artifact.type == "model" and artifact.path == "models/method"
    train_outs = [
        next(iter(o)) if isinstance(o, dict) else o
        for o in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["outs"]
    ]
    assert artifact.path in train_outs, "the artifact is what the train stage writes"


def test_dvc_api_resolves_a_registered_version_of_the_artifact(tmp_path):
    import dvc.api

    repo = tmp_path / "project"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)

    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True
        )

    git("init", "-q")
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=repo, check=True, capture_output=True)
    git("add", "-A")
    git("commit", "-qm", "project")
    git("tag", "-a", f"{NAME}@v1.0.0", "-m", "registered")  # a GTO registration tag
    shown = dvc.api.artifacts_show(NAME, repo=str(repo))
    assert shown["path"] == "models/method" and len(shown["rev"]) == 40
