"""The documents a newcomer reads: local links resolve, the index lists every page, the licence
and the citation file say what pyproject.toml says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def _local_links(path: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(path.read_text()) if "://" not in m.group(1)]


def test_local_links_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = [
        f"{page.relative_to(ROOT)} -> {link}"
        for page in pages
        for link in _local_links(page)
        if not (page.parent / link).exists()
    ]
    assert not broken, broken


def test_the_docs_index_lists_every_page():
    listed = set(_local_links(ROOT / "docs" / "README.md"))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= listed, pages - listed


def test_licence_and_citation_match_the_package():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'license = { text = "Apache-2.0" }' in pyproject
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "Apache-2.0"
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert citation["version"] == version
    paper = citation["preferred-citation"]
    assert paper["title"].startswith("Privacy Beyond Pixels")
    assert [a["family-names"] for a in paper["authors"]] == ["Fioresi", "Dave", "Shah"]
    assert "2511.08666" in paper["url"] and paper["year"] == 2026


def test_the_readme_leads_with_the_two_commands_and_names_the_platform():
    text = (ROOT / "README.md").read_text()
    assert text.index("make run") < text.index("## Results")
    assert "Linux x86_64 with Python 3.11" in text
    assert len(text.splitlines()) < 200


def test_stage_outputs_table_names_each_stage_once():
    text = (ROOT / "docs" / "internals.md").read_text()
    table = text.split("## Stage outputs (Layout)", 1)[1].split("\n\n", 1)[0]
    stages = [line.split("|")[1].strip() for line in table.splitlines()[3:] if line.startswith("|")]
    assert len(stages) == len(set(stages)), stages
    assert "adapter.safetensors" not in table, "the train stage writes method.json + method.safetensors"


def test_dvc_config_sets_no_remote_and_the_s3_test_endpoint_avoids_the_mlflow_ui_port():
    import configparser

    config = configparser.ConfigParser()
    config.read_string((ROOT / ".dvc" / "config").read_text())
    # a clone must not push into a bucket its user does not own: remotes are the user's to add
    assert "remote" not in config["core"] and not [s for s in config.sections() if s.startswith("'remote")]
    storage = (ROOT / "docs" / "storage.md").read_text()
    assert "The repository sets no\nremote" in storage
    ui_port = re.search(r"mlflow ui .*--port (\d+)", (ROOT / "Makefile").read_text()).group(1)
    moto_ports = re.findall(r"moto_server -H 127\.0\.0\.1 -p (\d+)", storage)
    assert moto_ports and ui_port not in moto_ports
    assert all(f"127.0.0.1:{port}" in storage for port in moto_ports)
