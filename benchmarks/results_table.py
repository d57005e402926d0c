"""Write the README's results table and pictures from the run that produced them.

    python benchmarks/results_table.py                      # print the table from reports/metrics.json
    python benchmarks/results_table.py --readme README.md   # also rewrite the README's marked blocks

Every figure comes from reports/metrics.json (means over seeds with their intervals); nothing is
typed by hand, so the README cannot drift from the run it quotes. The table also lands in
benchmarks/results/results_table.md. The same run's plots (privacy-utility plane, per-attribute
leakage, bias, Pareto front, loss curves, contact sheets of the benchmark) are copied from its
reports/ into docs/images/, and the figure blocks of the README (--readme) and of docs/results.md
(--results-doc) are rewritten to show them: commit them together with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from latentanon.evaluation.readme_table import replace_results_block, results_table

ROOT = Path(__file__).resolve().parents[1]
FIGURES_BEGIN = "<!-- results-figures:begin (benchmarks/results_table.py writes this block) -->"
FIGURES_END = "<!-- results-figures:end -->"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# name in docs/images -> (file under the run's reports/, caption)
FIGURES = {
    "privacy_utility.png": (
        "evaluate/privacy_utility.png",
        "Privacy-utility plane: every method's normalised leakage against its utility relative to raw",
    ),
    "attribute_leakage.png": (
        "evaluate/attribute_leakage.png",
        "Per-attribute leakage of raw and anonymized features (attacker cMAP against chance)",
    ),
    "contact_privacy_videos.png": (
        "generate/contact_privacy_videos.png",
        "The benchmark: privacy videos with their private attributes",
    ),
    "contact_actions.png": ("generate/contact_actions.png", "The benchmark: trimmed action clips"),
    "bias.png": ("audit_bias/bias.png", "Bias audit: per-gender accuracy, raw and anonymized"),
    "pareto.png": ("tune/pareto.png", "The tune stage's Optuna Pareto front and the chosen operating point"),
    "loss_curves.png": ("train/loss_curves.png", "Training loss of the chosen method"),
}
README_FIGURES = ("privacy_utility.png", "attribute_leakage.png", "contact_privacy_videos.png")
# Drawn only by some methods: a method without a training loop (distil) has no loss curves.
OPTIONAL_FIGURES = frozenset({"loss_curves.png"})


class FigureError(Exception):
    pass


def copy_figures(reports: Path, images: Path) -> dict[str, Path]:
    """Copy every figure of FIGURES from ``reports`` into ``images``; all or none (a README must
    not show pictures of two runs). An optional figure the run did not draw is left out, and an
    older copy of it removed."""
    sources = {}
    for name, (relative, _) in FIGURES.items():
        source = reports / relative
        if not source.is_file() and name in OPTIONAL_FIGURES:
            continue
        if not source.is_file():
            raise FigureError(f"{source}: missing; the run whose metrics the table quotes must have drawn it")
        with source.open("rb") as handle:
            if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise FigureError(f"{source}: not a PNG file")
        sources[name] = source
    images.mkdir(parents=True, exist_ok=True)
    for name in OPTIONAL_FIGURES - set(sources):
        (images / name).unlink(missing_ok=True)
    copied = {}
    for name, source in sources.items():
        copied[name] = Path(shutil.copyfile(source, images / name))
    return copied


def figures_block(document: Path, images: Path, names) -> str:
    """Markdown image lines for ``names``, with links relative to ``document``'s folder."""
    folder = os.path.relpath(images.resolve(), document.resolve().parent)
    lines = [f"![{FIGURES[name][1]}]({Path(folder, name).as_posix()})" for name in names]
    return "\n\n".join(lines) + "\n"


def replace_figures_block(text: str, block: str, where: Path) -> str:
    begin, end = text.find(FIGURES_BEGIN), text.find(FIGURES_END)
    if begin < 0 or end < begin:
        raise FigureError(f"{where}: the figure markers are missing: {FIGURES_BEGIN} ... {FIGURES_END}")
    return text[: begin + len(FIGURES_BEGIN)] + "\n" + block + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", default="reports/metrics.json", help="the audit_bias stage's metrics tree")
    parser.add_argument(
        "--reports", default=None, help="the run's reports folder with its plots (default: the folder of --metrics)"
    )
    parser.add_argument("--readme", default=None, help="a markdown file with the results-table markers to rewrite")
    parser.add_argument(
        "--results-doc", default=None, help="a markdown file whose figure block shows every plot (e.g. docs/results.md)"
    )
    parser.add_argument("--images", default=str(ROOT / "docs" / "images"), help="where the run's plots are copied")
    parser.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "results" / "results_table.md"),
        help="where the table is also written",
    )
    args = parser.parse_args(argv)
    metrics = Path(args.metrics)
    if not metrics.exists():
        print(f"{metrics}: no metrics file; run the pipeline first (make run)", file=sys.stderr)
        return 2
    try:
        tree = json.loads(metrics.read_text())
    except json.JSONDecodeError as exc:
        print(f"{metrics}: not valid JSON: {exc}", file=sys.stderr)
        return 2
    table = results_table(tree)
    documents = [Path(p) for p in (args.readme, args.results_doc) if p]
    images = Path(args.images)
    try:
        texts = {path: path.read_text() for path in documents}
        if args.readme:
            readme = Path(args.readme)
            try:
                texts[readme] = replace_results_block(texts[readme], table)
            except ValueError as exc:
                raise FigureError(f"{readme}: {exc}") from exc
        copied: dict[str, Path] = {}
        if documents:
            copied = copy_figures(Path(args.reports) if args.reports else metrics.parent, images)
        if args.readme:
            readme = Path(args.readme)
            texts[readme] = replace_figures_block(texts[readme], figures_block(readme, images, README_FIGURES), readme)
        if args.results_doc:
            doc = Path(args.results_doc)
            drawn = [name for name in FIGURES if name in copied]
            texts[doc] = replace_figures_block(texts[doc], figures_block(doc, images, drawn), doc)
    except (FigureError, OSError) as exc:
        print(f"results_table: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table, end="")
    for path, text in texts.items():
        path.write_text(text)
        print(f"[results_table] rewrote the marked blocks of {path}", file=sys.stderr)
    if documents:
        print(f"[results_table] copied {len(copied)} figures into {images}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
