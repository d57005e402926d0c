"""The README results table, the DVC headline metric and the DVC plot data, from a metrics
tree fixture (tests/data/metrics_fixture.json, in the layout reports/metrics.json has)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from latentanon.evaluation import dvc_views, readme_table

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "data" / "metrics_fixture.json"


@pytest.fixture
def tree() -> dict:
    return json.loads(FIXTURE.read_text())


def _rows(table: str) -> dict[str, list[str]]:
    """The results table's rows by their label cell (e.g. "`raw`", "`distil` (trained)")."""
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def earlier_release(tree):
    """``tree`` as a release before the rename wrote it: the trained method labelled ``aam``."""
    if isinstance(tree, list):
        return [earlier_release(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    renamed = {"trained": "aam", **{k: "aam" + k[len("trained") :] for k in tree if k.startswith("trained_")}}
    return {renamed.get(k, k): earlier_release(v) for k, v in tree.items()}


def test_results_table_has_every_method_with_its_intervals(tree):
    table = readme_table.results_table(tree)
    header = table.splitlines()[0]
    assert "static cMAP (chance 0.267)" in header and "AR top1" in header and "AD auc" in header
    rows = _rows(table)
    assert list(rows) == ["`raw`", "`trained`", "`noise_0.2`"]  # the fixture predates the method's name
    assert rows["`trained`"][1] == "1.130 [0.880, 1.390]"  # static normalised leakage
    assert rows["`trained`"][2] == "0.750 [0.600, 0.900]"  # moving
    assert rows["`noise_0.2`"][0] == "0.329 [0.309, 0.349]"
    assert rows["`trained`"][3] == "n/a"  # worst scope: the fixture predates the scopes
    assert rows["`trained`"][5] == "0.816 [0.796, 0.836]"  # AR top-1 with its interval
    assert "Means over 3 seeds with 95% intervals" in table
    assert "within these intervals" in table


def test_the_trained_row_is_labelled_by_the_methods_name(tree):
    tree["privacy"]["trained"]["method"] = "distil"
    rows = _rows(readme_table.results_table(tree))
    assert list(rows) == ["`raw`", "`distil` (trained)", "`noise_0.2`"]
    assert rows["`distil` (trained)"][1] == "1.130 [0.880, 1.390]"


def test_an_earlier_releases_metrics_give_the_same_table_headline_and_plot_rows(tree):
    tree["privacy"]["trained"]["method"] = "distil"
    old = earlier_release(tree)
    assert "aam" in old["privacy"] and "aam_relative_drop" in old["utility"]["ar"] and "aam" in old["bias"]
    assert readme_table.results_table(old) == readme_table.results_table(tree)
    assert dvc_views.headline_metrics(old) == dvc_views.headline_metrics(tree)
    assert dvc_views.privacy_utility_rows(old) == dvc_views.privacy_utility_rows(tree)


def test_results_table_survives_missing_figures(tree):
    del tree["privacy"]["trained"]["moving"]
    tree["utility"]["ar"]["trained"]["interval"] = [None, None]
    rows = _rows(readme_table.results_table(tree))
    assert rows["`trained`"][2] == "n/a"
    assert rows["`trained`"][5] == "0.816"


def test_readme_block_is_replaced_between_the_markers_only(tree):
    doc = f"intro\n{readme_table.RESULTS_BEGIN}\nold table\n{readme_table.RESULTS_END}\noutro\n"
    new = readme_table.replace_results_block(doc, readme_table.results_table(tree))
    assert new.startswith("intro\n") and new.endswith(f"{readme_table.RESULTS_END}\noutro\n")
    assert "old table" not in new and "| `trained` |" in new
    assert readme_table.replace_results_block(new, readme_table.results_table(tree)) == new  # idempotent
    with pytest.raises(ValueError, match="markers"):
        readme_table.replace_results_block("no markers here", "x")


def _load_results_table_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_table", ROOT / "benchmarks" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_reports(root: Path, script) -> Path:
    """A reports folder as a run leaves it: metrics.json and every plot the README shows, each a
    distinct small PNG."""
    import shutil

    reports = root / "reports"
    reports.mkdir()
    shutil.copy(FIXTURE, reports / "metrics.json")
    for k, (relative, _) in enumerate(script.FIGURES.values()):
        (reports / relative).parent.mkdir(parents=True, exist_ok=True)
        (reports / relative).write_bytes(script.PNG_SIGNATURE + bytes([k]) * 32)
    return reports


def test_the_script_writes_the_table_and_rewrites_a_readme(tmp_path, tree):
    script = _load_results_table_script()
    reports = _fake_reports(tmp_path, script)
    readme = tmp_path / "README.md"
    blocks = f"{readme_table.RESULTS_BEGIN}\n{readme_table.RESULTS_END}\n{script.FIGURES_BEGIN}\n{script.FIGURES_END}\n"
    readme.write_text(f"# x\n{blocks}")
    results_doc = tmp_path / "docs" / "results.md"
    results_doc.parent.mkdir()
    results_doc.write_text(f"# results\n{script.FIGURES_BEGIN}\nold\n{script.FIGURES_END}\nmore\n")
    images = tmp_path / "docs" / "images"
    out = tmp_path / "table.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "results_table.py"),
            "--metrics",
            str(reports / "metrics.json"),
            "--readme",
            str(readme),
            "--results-doc",
            str(results_doc),
            "--images",
            str(images),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == readme_table.results_table(tree)
    text = readme.read_text()
    assert readme_table.results_table(tree) in text
    # the run's own plots, copied byte for byte, and shown from the committed images folder
    for name, (relative, _) in script.FIGURES.items():
        assert (images / name).read_bytes() == (reports / relative).read_bytes(), name
    for name in ("privacy_utility.png", "attribute_leakage.png", "contact_privacy_videos.png"):
        assert f"](docs/images/{name})" in text, name
    assert text.index("privacy_utility.png") > text.index(readme_table.RESULTS_END)
    doc = results_doc.read_text()
    assert "old" not in doc and doc.endswith(f"{script.FIGURES_END}\nmore\n")
    assert all(f"](images/{name})" in doc for name in script.FIGURES)
    # a run that lacks a plot changes nothing: no README mixes two runs' pictures
    (reports / "tune" / "pareto.png").unlink()
    before = {p: p.read_bytes() for p in (readme, results_doc, *images.iterdir())}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "results_table.py"),
            "--metrics",
            str(reports / "metrics.json"),
            "--readme",
            str(readme),
            "--images",
            str(images),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "pareto.png: missing" in proc.stderr
    assert {p: p.read_bytes() for p in (readme, results_doc, *images.iterdir())} == before
    # a method without a training loop draws no loss curves: that figure alone may be absent
    shutil.copyfile(images / "pareto.png", reports / "tune" / "pareto.png")
    (reports / "train" / "loss_curves.png").unlink()
    rerun = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "results_table.py"),
            "--metrics",
            str(reports / "metrics.json"),
            "--readme",
            str(readme),
            "--results-doc",
            str(results_doc),
            "--images",
            str(images),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert not (images / "loss_curves.png").exists() and "loss_curves.png" not in results_doc.read_text()
    assert "](images/pareto.png)" in results_doc.read_text()
    missing = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "results_table.py"),
            "--metrics",
            str(tmp_path / "none.json"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "none.json" in missing.stderr


def test_the_readme_has_the_results_markers():
    text = (ROOT / "README.md").read_text()
    assert readme_table.RESULTS_BEGIN in text and readme_table.RESULTS_END in text


def test_headline_is_short_and_complete(tree):
    headline = dvc_views.headline_metrics(tree)

    def leaves(node):
        return [v for x in node.values() for v in (leaves(x) if isinstance(x, dict) else [x])]

    assert 15 <= len(leaves(headline)) <= 35
    assert headline["privacy"]["static_leakage"] == 1.13
    assert headline["privacy"]["moving_leakage_low"] == 0.6
    assert headline["utility_drop"]["ar"] == pytest.approx((0.722 - 0.816) / 0.722, abs=1e-4)
    assert headline["bias"] == {"gap_raw": 0.12, "gap_trained": 0.1}
    assert headline["targets_passed"] == 1
    # a broken tree gives the same keys with nulls: every experiment has the same columns
    empty = dvc_views.headline_metrics({"utility": {t: {} for t in tree["utility"]}})
    assert sorted(empty["privacy"]) == sorted(headline["privacy"])
    assert empty["privacy"]["static_leakage"] is None


def test_plot_data_rows_and_csv(tmp_path, tree):
    rows = dvc_views.privacy_utility_rows(tree)
    assert {r["method"] for r in rows} == {"raw", "trained", "noise_0.2"}
    assert next(r for r in rows if r["method"] == "noise_0.2") == {
        "method": "noise_0.2",
        "leakage": 0.4,
        "moving_leakage": 0.76,
        "leakage_scope": None,
        "relative_utility": 0.999,
    }
    path = dvc_views.write_rows_csv(rows + [{"method": "x", "extra": 1}], tmp_path / "pu.csv")
    read = list(csv.DictReader(path.open()))
    assert read[0].keys() == {"method", "leakage", "moving_leakage", "leakage_scope", "relative_utility", "extra"}
    assert read[-1]["leakage"] == "" and read[-1]["extra"] == "1"

    history = {
        "epoch": [1, 2],
        "train_total": [3.0, 2.0],
        "val_total": [3.5, 2.5],
        "heads": {"x": 1},
        "diverged_at_epoch": 5,
        "short": [1.0],
    }
    assert dvc_views.history_rows(history) == [
        {"epoch": 1, "train_total": 3.0, "val_total": 3.5},
        {"epoch": 2, "train_total": 2.0, "val_total": 2.5},
    ]
    pareto = {
        "front": [{"trial": 4, "leakage": 0.5, "utility": 0.9}, {"trial": 1, "leakage": 0.3, "utility": 0.8}],
        "chosen_trial": 4,
    }
    assert dvc_views.pareto_rows(pareto) == [
        {"trial": 1, "leakage": 0.3, "utility": 0.8, "chosen": False},
        {"trial": 4, "leakage": 0.5, "utility": 0.9, "chosen": True},
    ]
