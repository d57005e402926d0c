"""The README's results table, written from reports/metrics.json between two markers."""

from __future__ import annotations

from latentanon.evaluation.dvc_views import nested_value, rounded_number
from latentanon.evaluation.metric_keys import TRAINED, current_keys
from latentanon.evaluation.report_cells import scope_cell, scope_label, scope_order, with_interval
from latentanon.formatting import figure

RESULTS_BEGIN = "<!-- results-table:begin (benchmarks/results_table.py writes this block) -->"
RESULTS_END = "<!-- results-table:end -->"


def results_table(tree: dict) -> str:
    """The README's results table, from reports/metrics.json: every figure with its interval. The
    trained method's row is labelled by its name (``privacy.trained.method``), marked as trained;
    a tree an earlier release wrote (``aam`` for ``trained``) gives the same table."""
    tree = current_keys(tree)
    privacy, utility = tree.get("privacy") or {}, tree.get("utility") or {}
    # metrics.json is written with sorted keys: order the rows raw, trained, then the baselines
    listed = ["raw", TRAINED, *(nested_value(tree, "baselines", "methods") or [])]
    present = [m for m in privacy if isinstance(privacy[m], dict)]
    methods = [m for m in dict.fromkeys(listed) if m in present] + [m for m in present if m not in listed]
    tasks = [t for t in ("ar", "tad", "ad") if t in utility] + [t for t in utility if t not in ("ar", "tad", "ad")]
    conf = rounded_number(tree.get("confidence"))
    seeds = nested_value(tree, "seeds", "evaluate")
    n_seeds = len(seeds) if isinstance(seeds, list) else seeds
    chance = nested_value(privacy, "raw", "chance")
    header = [
        "method",
        f"static cMAP (chance {figure(chance)})",
        "normalised leakage, static",
        "normalised leakage, moving",
        "normalised leakage, worst scope",
        "re-id top-1",
    ] + [f"{t.upper()} {utility[t].get('metric', '')}".strip() for t in tasks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in methods:
        p = privacy[m]
        moving = p.get("moving") or {}
        cells = [
            row_label(m, p, code=True),
            with_interval(p.get("cmap"), p.get("cmap_interval")),
            with_interval(p.get("normalized_leakage"), p.get("normalized_leakage_interval")),
            with_interval(moving.get("normalized_leakage"), moving.get("normalized_leakage_interval")),
            _worst_cell(p.get("worst_scope")),
            with_interval(p.get("reid_top1"), p.get("reid_top1_interval")),
        ]
        for t in tasks:
            entry = utility[t].get(m) or {}
            cells.append(with_interval(entry.get("value"), entry.get("interval")))
        lines.append("| " + " | ".join(cells) + " |")
    scope_lines = _scope_table(privacy, methods)
    floor = nested_value(tree, "privacy_floor", "worst_scope")
    if floor and floor.get("scope"):
        scope_lines += [
            "",
            f"The floor (what the raw seen-task posteriors leak, worst scope "
            f"*{scope_label(floor['scope'])}*): "
            f"{with_interval(floor.get('normalized_leakage'), floor.get('normalized_leakage_interval'))}.",
        ]
    lines += scope_lines
    note = (
        f"Means over {n_seeds} seeds with {int(round(100 * conf)) if conf else '?'}% intervals in "
        "brackets, from `reports/metrics.json`. Another machine gives other figures within these "
        "intervals (floating point and thread scheduling differ), not the same digits."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def row_label(method: str, privacy: dict, code: bool = False) -> str:
    """A table row's label: the method, and for the trained one its own name (``distil``), marked
    as the trained method."""
    name = privacy.get("method") if method == TRAINED else None
    label = f"`{name or method}`" if code else str(name or method)
    return f"{label} (trained)" if name else label


def _worst_cell(worst: dict | None) -> str:
    if not worst or not worst.get("scope"):
        return "n/a"
    return (
        f"{with_interval(worst.get('normalized_leakage'), worst.get('normalized_leakage_interval'))} "
        f"({scope_label(worst['scope'])})"
    )


def _scope_table(privacy: dict, methods: list[str]) -> list[str]:
    """Every method's normalised leakage in every scope (README: below the results table)."""
    names = scope_order(s for m in methods for s in (privacy[m].get("scopes") or {}))
    if not names:
        return []
    lines = [
        "",
        "| method | " + " | ".join(f"leakage, {scope_label(n)}" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for m in methods:
        entries = privacy[m].get("scopes") or {}
        lines.append(f"| {row_label(m, privacy[m])} | " + " | ".join(scope_cell(entries.get(n)) for n in names) + " |")
    return lines


def replace_results_block(document: str, table: str) -> str:
    """``document`` with the text between the results-table markers replaced by ``table``."""
    begin, end = document.find(RESULTS_BEGIN), document.find(RESULTS_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the results-table markers are missing: {RESULTS_BEGIN} ... {RESULTS_END}")
    return document[: begin + len(RESULTS_BEGIN)] + "\n" + table + document[end:]
