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
    broken = [f"{page.relative_to(ROOT)} -> {link}" for page in pages for link in _local_links(page)
              if not (page.parent / link).exists()]
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
