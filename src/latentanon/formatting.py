"""How a figure is written for people: one rule for the stage lines, the report and the audit."""

from __future__ import annotations

import math


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def figure(value, digits: int = 3) -> str:
    """``0.305``; ``n/a`` for anything that is not a finite number."""
    number = _number(value)
    return "n/a" if number is None else f"{number:.{digits}f}"


def percent(value, digits: int = 1) -> str:
    """A fraction as a signed percentage (``0.035`` -> ``+3.5%``); ``n/a`` as for ``figure``."""
    number = _number(value)
    return "n/a" if number is None else f"{100 * number:+.{digits}f}%"
