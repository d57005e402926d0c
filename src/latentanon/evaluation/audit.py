"""``latentanon audit``: the evaluate stage's attack suite on any feature store that carries private
labels, for users who want to know how much their own encoder's features leak before anonymizing.

Every set of the store whose records hold private-attribute columns (``tasks.private.ATTRIBUTES``)
and a train / val / test ``split`` is attacked: static clips and moving clips (where the set has
them) by the validated attackers (linear and MLP, standardised and ZCA-whitened, chosen per
attribute on val, scored once on test), and by the paper's protocol beside them. Each figure is the
mean over seeds; cMAP above chance gets a bootstrap interval over the test items combined with the
seeds. Writes audit.json and audit.md.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from latentanon._files import write_json_atomic, write_text_atomic
from latentanon.errors import DataError
from latentanon.evaluation import metrics, resampling
from latentanon.evaluation.privacy import attack, paper_protocol_attack
from latentanon.features.featureset import FeatureSet
from latentanon.tasks.private import ATTRIBUTES

SCOPES = {"static": "static", "moving": "clips"}


def labelled_sets(uri: str) -> dict[str, FeatureSet]:
    """The store's sets that carry at least one private-attribute column and every split."""
    from latentanon.features.store import list_feature_sets, load_feature_set

    names = list(list_feature_sets(uri))
    if not names:
        raise DataError(f"{uri}: no feature sets in this store")
    out = {}
    for name in names:
        fs = load_feature_set(uri, name)
        if not any(a in fs.records.columns for a in ATTRIBUTES):
            continue
        if "split" not in fs.records.columns or not {"train", "val", "test"} <= set(fs.records["split"]):
            raise DataError(f"{uri}: set {name!r} carries private labels but not a train / val / test 'split' column")
        out[name] = fs
    if not out:
        raise DataError(f"{uri}: no feature set carries private-attribute labels ({', '.join(ATTRIBUTES)}); "
                        "the audit needs them to train its attackers")
    return out


def _attributes(sets: list[FeatureSet]) -> tuple[str, ...]:
    return tuple(a for a in ATTRIBUTES if all(a in fs.records.columns for fs in sets))


def audit_sets(sets: dict[str, FeatureSet], seeds: list[int], confidence: float = 0.95,
               n_resamples: int = 1000) -> dict:
    """Attack every scope the sets support, for every seed; summarise with intervals."""
    if not seeds:
        raise ValueError("audit: at least one seed is needed")
    result: dict = {"sets": sorted(sets), "seeds": list(seeds), "confidence": confidence, "scopes": {}}
    for scope, kind in SCOPES.items():
        members = [fs for fs in sets.values() if kind in fs.arrays and len(fs)]
        if not members:
            continue
        attributes = _attributes(members)
        if not attributes:
            continue
        splits = [[fs.split(s) for fs in members] for s in ("train", "val", "test")]
        runs, papers = [], []
        for seed in tqdm(seeds, desc=f"audit {scope}", unit="seed", disable=None):
            runs.append(attack(*splits, attributes, seed, kind))
            papers.append(paper_protocol_attack(splits[0], splits[2], attributes, seed, kind))
        weights = resampling.shared_weights(len(next(iter(runs[0]["items"]["labels"].values()))), n_resamples)
        above = []
        for run in runs:
            cmap, chance = resampling.weighted_cmap(run["items"]["labels"], run["items"]["probabilities"], weights)
            above.append(cmap - chance)
        block = {
            "sets": sorted(fs.name for fs in members),
            "attributes": {},
            "cmap": metrics.mean_interval([r["cmap"] for r in runs], confidence),
            "chance": metrics.mean_interval([r["chance"] for r in runs], confidence),
            "cmap_above_chance": resampling.combine_seeds(np.stack(above), confidence),
            "paper_protocol": {
                "cmap": metrics.mean_interval([p["cmap"] for p in papers], confidence),
                "best_test_epoch": [p["best_test_epoch"] for p in papers],
                "protocol": papers[0]["protocol"],
            },
            "n_test_items": runs[0]["n_test_videos"],
        }
        for a in runs[0]["attributes"]:
            per = [r["attributes"][a] for r in runs if a in r["attributes"]]
            block["attributes"][a] = {
                "map": metrics.mean_interval([p["map"] for p in per], confidence),
                "chance": metrics.mean_interval([p["chance"] for p in per], confidence),
                "attackers": [p["attacker"] for p in per],
            }
        result["scopes"][scope] = block
    if not result["scopes"]:
        raise DataError(f"audit: sets {sorted(sets)} hold neither static nor moving clips with private labels")
    return result


def _fmt(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _spec(attacker: dict) -> str:
    tags = [attacker["name"], str(attacker["hidden"]) if attacker["hidden"] else "",
            "ZCA" if attacker.get("whiten") else "", f"x{attacker.get('depth', 1)}" if attacker.get("depth", 1) > 1 else ""]
    return " ".join(t for t in tags if t)


def write_audit_report(result: dict, uri: str, path: Path) -> Path:
    conf = int(round(100 * result["confidence"]))
    lines = [
        "# latentanon audit: how much do these features leak?",
        "",
        f"Store: `{uri}`; sets with private labels: {', '.join(result['sets'])}; seeds {result['seeds']}.",
        "Attackers (linear and MLP, standardised and ZCA-whitened inputs, a larger MLP) are trained with the "
        "private labels on the train split, chosen per attribute on validation, and scored once on test: "
        "cMAP over every attribute class next to its chance level (mean class prevalence). "
        f"Intervals: {conf}%; cMAP - chance from a bootstrap over the test items combined with the seeds.",
        "",
        "| clips | cMAP | chance | cMAP - chance | paper protocol cMAP (best test epoch) | test items |",
        "|---|---|---|---|---|---|",
    ]
    for scope, b in result["scopes"].items():
        above = b["cmap_above_chance"]
        lines.append(f"| {scope} | {_fmt(b['cmap']['mean'])} | {_fmt(b['chance']['mean'])} | "
                     f"{_fmt(above['mean'])} [{_fmt(above['low'])}, {_fmt(above['high'])}] | "
                     f"{_fmt(b['paper_protocol']['cmap']['mean'])} | {b['n_test_items']} |")
    for scope, b in result["scopes"].items():
        lines += ["", f"## {scope.capitalize()} clips, per attribute", "",
                  "| attribute | mAP | chance | attacker chosen on validation |", "|---|---|---|---|"]
        for a, v in b["attributes"].items():
            chosen = sorted({_spec(s) for s in v["attackers"]})
            lines.append(f"| {a} | {_fmt(v['map']['mean'])} | {_fmt(v['chance']['mean'])} | {', '.join(chosen)} |")
    lines += ["", "A leak well above chance here is what an anonymizer must remove; `latentanon evaluate` "
              "reports the same attacks on anonymized features as normalised leakage against these figures.", ""]
    return write_text_atomic(path, "\n".join(lines))


def audit(uri: str, out_dir: str | Path, seeds: list[int], confidence: float = 0.95, n_resamples: int = 1000) -> dict:
    """Audit the store at ``uri``; writes ``out_dir``/audit.json and audit.md; returns a summary."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    result = audit_sets(labelled_sets(uri), list(seeds), confidence, n_resamples)
    result["features_uri"] = str(uri)
    write_json_atomic(out_dir / "audit.json", result)
    write_audit_report(result, uri, out_dir / "audit.md")
    return {
        "features_uri": str(uri),
        "report": str(out_dir / "audit.md"),
        "cmap": {s: b["cmap"]["mean"] for s, b in result["scopes"].items()},
        "chance": {s: b["chance"]["mean"] for s, b in result["scopes"].items()},
        "cmap_above_chance_interval": {s: [b["cmap_above_chance"]["low"], b["cmap_above_chance"]["high"]]
                                       for s, b in result["scopes"].items()},
        "seconds": round(time.perf_counter() - started, 2),
    }
