"""The README's smoke quickstart and docs/own-data.md's walk-through, run as written.

The commands come from the fenced blocks marked ``<!-- checked: tests/test_readme_commands.py
runs this block -->`` in those files, so the documents cannot drift from what works. They run in
a throw-away folder holding only params.smoke.yaml (the installed package provides the rest), in
that order: the quickstart trains the smoke model the walk-through then uses.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MARKER = "<!-- checked: tests/test_readme_commands.py runs this block -->"
DOCUMENTS = ("README.md", "docs/own-data.md")


def checked_commands(text: str) -> list[str]:
    """Commands of every marked ```sh block: comments dropped, backslash continuations joined."""
    commands = []
    for match in re.finditer(re.escape(MARKER) + r"\s*```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\s*\\\n\s*", " ", match.group(1))
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_the_marked_blocks_are_found():
    readme = checked_commands((ROOT / "README.md").read_text())
    assert readme and all("params.smoke.yaml" in c for c in readme), "the README quickstart stays at smoke size"
    walk = checked_commands((ROOT / "docs" / "own-data.md").read_text())
    assert any(c.split()[:2] == [".venv/bin/latentanon", "anonymize"] for c in walk)
    assert checked_commands(f"x\n{MARKER}\n```sh\na \\\n  b   # note\n# skip\nc\n```\n") == ["a b", "c"]


@pytest.mark.slow
def test_readme_and_own_data_commands_run_as_written(tmp_path):
    shutil.copy(ROOT / "params.smoke.yaml", tmp_path / "params.smoke.yaml")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the documented default: mlflow.db in the workdir
    outputs = []
    for document in DOCUMENTS:
        for command in checked_commands((ROOT / document).read_text()):
            # as a user's shell would run it, with this interpreter's environment as .venv
            line = re.sub(r"(?<![\w/.])\.venv/bin/", shlex.quote(str(BIN)) + "/", command)
            proc = subprocess.run(["bash", "-euc", line], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, (
                f"{document}: `{command}` failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
            outputs.append(proc.stdout)
    text = "\n".join(outputs)
    # the quickstart: one key result per stage, then the verdict; nothing outside runs/
    for stage in (
        "generate",
        "validate",
        "pretrain_encoder",
        "extract",
        "tune",
        "train",
        "evaluate",
        "audit_bias",
        "gate",
    ):
        assert f"[{stage}] " in text, stage
    assert "Gate decision: " in text and "outside the DVC job" in text  # smoke runs are not committed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.smoke.yaml", "runs"]
    smoke = tmp_path / "runs" / "smoke"
    headline = json.loads((smoke / "reports" / "headline.json").read_text())
    assert set(headline) == {"privacy", "utility_drop", "scopes", "bias", "targets_passed"}
    for plot in ("audit_bias/privacy_utility.csv", "tune/pareto_front.csv"):
        assert (smoke / "reports" / plot).read_text().count("\n") >= 2, plot
    train_reports = smoke / "reports" / "train"  # loss curves only from a method with a training loop
    assert (train_reports / "loss_curves.csv").exists() == (train_reports / "history.json").exists()
    # the walk-through: the loosened smoke gate approved, so the shared store is marked approved
    assert json.loads((smoke / "features_anon" / "PUBLISH_STATUS.json").read_text())["status"] == "approved"
    shared = tmp_path / "runs" / "new" / "features_shared"
    assert json.loads((shared / "PUBLISH_STATUS.json").read_text())["share"] is True
    assert (shared / "index.json").exists()
