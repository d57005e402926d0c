"""A planned file of the synthetic benchmark (Job), and the rules every layout planner shares."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from latentanon.data import layouts
from latentanon.data.actors import Identity, Outfit


@dataclass
class Job:
    """One file to render: everything needed is planned up front so annotations come first."""

    set_name: str
    path: str  # relative to the data root
    kind: str  # trimmed | timeline | image
    person: Identity
    outfit: Outfit
    split: str
    n_frames: int
    seed: tuple[int, ...]
    action: str = ""
    timeline: list = field(default_factory=list)  # [(start_frame, end_frame, what)] for long videos
    partner: Identity | None = None  # second person in two-person scenes


def _official(split: str) -> str:
    """The real dataset's split a synthetic split sits in: val identities are part of train."""
    return "test" if split == "test" else "train"


def _sidecar(rows: list[tuple[str, Job]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(layouts.SIDECAR_COLUMNS)
    for rel, job in rows:
        p, o = job.person, job.outfit
        writer.writerow([rel, p.identity, p.skin_tone, p.gender, o.clothing, o.face])
    return buf.getvalue()


def _videos_per_identity(count: int, split: str, test_multiplier: int) -> int:
    """Videos per identity in ``split``: the test split holds ``test_multiplier`` times as many.
    Test comes last in every planner, so train and val stay the same videos whatever the multiplier."""
    return count * test_multiplier if split == "test" else count
