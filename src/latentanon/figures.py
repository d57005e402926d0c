"""Figure plumbing shared by every stage (not the evaluation figures, which are
latentanon.evaluation.plots): a headless pyplot and atomic PNG writes."""

from __future__ import annotations

from pathlib import Path

from latentanon._files import atomic_path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (stages run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG through a hidden temp file renamed into place, then close it.

    A stage killed mid-write leaves the previous figure, never a torn one.
    """
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        pyplot().close(fig)
    return path
