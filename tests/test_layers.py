"""The layering of shared/DESIGN.md, kept by the real import graph.

The contract lives in pyproject.toml ([tool.importlinter]): each layer imports only the layers
below it. It is checked on the source as it is, and shown to catch an upward import planted in
a copy of the source. The graph also has no import cycle, and importing a config module or a
light layer never loads torch, scikit-learn or MLflow.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
HEAVY = ("torch", "sklearn", "mlflow")
# Modules every stage's process imports before it knows which stage runs, and every config module.
LIGHT = (
    "latentanon.config",
    "latentanon.layout",
    "latentanon.environment",
    "latentanon.cli",
    "latentanon.stages",
    "latentanon.data.config",
    "latentanon.encoders.config",
    "latentanon.methods.config",
    "latentanon.evaluation.config",
    "latentanon.tracking.config",
    "latentanon.tuning.config",
    "latentanon.methods",
    "latentanon.tasks",
    "latentanon.tracking.uri",
)


def _lint(source_root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(source_root)},
    )


def test_the_source_keeps_the_layer_contract():
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "src" / "latentanon", tmp_path / "latentanon", ignore=shutil.ignore_patterns("__pycache__"))
    planted = tmp_path / "latentanon" / "features" / "featureset.py"
    planted.write_text(planted.read_text() + "\n\ndef _upward():\n    from latentanon.evaluation import run  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "latentanon.features is not allowed to import latentanon.evaluation" in result.stdout


def _strongly_connected(graph) -> list[list[str]]:
    """Tarjan's algorithm over the module graph: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycle():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("latentanon")  # function-level imports count: a lazy cycle is a cycle
    assert _strongly_connected(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    class Graph:
        modules = {"a", "b", "c"}
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}}

        def find_modules_directly_imported_by(self, module):
            return self.edges[module]

    assert _strongly_connected(Graph()) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_import_no_heavy_library(module):
    code = f"import sys, {module}\nheavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\nprint(','.join(heavy))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing {module} loads {result.stdout.strip()}"


def test_the_stage_table_names_every_pipeline_step_once():
    from latentanon import stages
    from latentanon.layout import PIPELINE

    table = stages.stage_table()
    assert list(table)[: len(PIPELINE)] == list(PIPELINE)
    assert set(table) - set(PIPELINE) == {"finalize_extract"}
    assert all(callable(f) and f.__module__ == "latentanon.stages" for f in table.values())
