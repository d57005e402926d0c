"""The suite's scheduling: the files named as the longest exist and are collected first."""

from __future__ import annotations

from pathlib import Path

from conftest import LONGEST_FILES

TESTS = Path(__file__).resolve().parent


def test_every_file_named_as_longest_exists():
    missing = [name for name in LONGEST_FILES if not (TESTS / name).is_file()]
    assert not missing, f"tests/conftest.py LONGEST_FILES names files that are gone: {missing}"
    assert len(set(LONGEST_FILES)) == len(LONGEST_FILES)


def test_the_longest_files_are_collected_first(request):
    order = []
    for item in request.session.items:
        if item.path.name not in order:
            order.append(item.path.name)
    collected = [name for name in LONGEST_FILES if name in order]
    assert order[: len(collected)] == collected
