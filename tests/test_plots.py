"""Figures are written whole: through a hidden temp file, then renamed; the figure is closed."""

from __future__ import annotations

from latentanon.figures import pyplot, save_figure


def test_save_figure_writes_a_png_atomically_and_closes_it(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    target = tmp_path / "nested" / "curve.png"
    assert save_figure(fig, target, dpi=50) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in target.parent.iterdir()] == ["curve.png"]  # no temp file left behind
    assert not plt.fignum_exists(fig.number)
