"""``latentanon audit``: the evaluate stage's attack suite on any feature store that carries private
labels, for users who want to know how much their own encoder's features leak before anonymizing.

Every set of the store whose records hold private-attribute columns (``tasks.private.ATTRIBUTES``)
and a train / val / test ``split`` is attacked: static clips and moving clips (where the set has
them) by the validated attackers (linear and MLP, standardised and ZCA-whitened, chosen per
attribute on val, scored once on test), and by the paper's protocol beside them. Each figure is the
mean over seeds; cMAP above chance gets a bootstrap interval over the test items combined with the
seeds. The scopes a user shares beyond single clips are attacked too: each video's mean moving clip
and mean snippet (``<kind>_video_mean``) and, given a saved method, the clips published R times
through that method's publish path and averaged (``rerelease<R>``, per clip and per video mean),
with its normalised leakage against the store's own features in the same scope. Writes audit.json
and audit.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from latentanon._files import write_json_atomic, write_text_atomic
from latentanon.errors import DataError
from latentanon.evaluation import metrics, resampling
from latentanon.evaluation.privacy import ATTACKER_GRID, attack, paper_protocol_attack
from latentanon.features.featureset import FeatureSet
from latentanon.formatting import figure
from latentanon.tasks.private import ATTRIBUTES

SCOPES = {"static": "static", "moving": "clips"}
# scope -> kind attacked on each video's mean feature
VIDEO_MEAN_SCOPES = {"moving_video_mean": "clips", "snippets_video_mean": "snippets"}


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
        raise DataError(
            f"{uri}: no feature set carries private-attribute labels ({', '.join(ATTRIBUTES)}); "
            "the audit needs them to train its attackers"
        )
    return out


def _attributes(sets: list[FeatureSet]) -> tuple[str, ...]:
    return tuple(a for a in ATTRIBUTES if all(a in fs.records.columns for fs in sets))


def _scope_runs(
    members: list[FeatureSet],
    kind: str,
    seeds: list[int],
    per_video_mean: bool,
    scope: str,
    grid: tuple = ATTACKER_GRID,
) -> tuple[list[dict], list[dict]] | None:
    """Per seed, the attack on ``members``' ``kind`` (and the paper's protocol for single clips);
    None when the sets share no private-attribute column."""
    attributes = _attributes(members)
    if not attributes:
        return None
    splits = [[fs.split(s) for fs in members] for s in ("train", "val", "test")]
    runs, papers = [], []
    for seed in tqdm(seeds, desc=f"audit {scope}", unit="seed", disable=None):
        runs.append(attack(splits[0], splits[1], splits[2], attributes, seed, kind, grid, per_video_mean))
        if not per_video_mean:
            papers.append(paper_protocol_attack(splits[0], splits[2], attributes, seed, kind))
    return runs, papers


def _scope_block(
    members: list[FeatureSet], runs: list[dict], papers: list[dict], confidence: float, n_resamples: int
) -> dict:
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
        "n_test_items": runs[0]["n_test_videos"],
    }
    if papers:
        block["paper_protocol"] = {
            "cmap": metrics.mean_interval([p["cmap"] for p in papers], confidence),
            "best_test_epoch": [p["best_test_epoch"] for p in papers],
            "protocol": papers[0]["protocol"],
        }
    for a in runs[0]["attributes"]:
        per = [r["attributes"][a] for r in runs if a in r["attributes"]]
        block["attributes"][a] = {
            "map": metrics.mean_interval([p["map"] for p in per], confidence),
            "chance": metrics.mean_interval([p["chance"] for p in per], confidence),
            "attackers": [p["attacker"] for p in per],
        }
    return block


def _paired_leakage(raw_runs: list[dict], runs: list[dict], confidence: float, n_resamples: int) -> dict:
    """Normalised leakage against the store's own features in the same scope, paired per seed."""
    weights = resampling.shared_weights(len(next(iter(raw_runs[0]["items"]["labels"].values()))), n_resamples)
    values = np.stack(
        [
            resampling.paired_leakage(
                r["items"]["labels"], r["items"]["probabilities"], m["items"]["probabilities"], weights
            )
            for r, m in zip(raw_runs, runs)
        ]
    )
    return resampling.combine_seeds(values, confidence)


def audit_sets(
    sets: dict[str, FeatureSet],
    seeds: list[int],
    confidence: float = 0.95,
    n_resamples: int = 1000,
    method=None,
    releases: tuple[int, ...] = (16, 64),
    grid: tuple = ATTACKER_GRID,
) -> dict:
    """Attack every scope the sets support, for every seed; summarise with intervals. ``method`` (a
    fitted or loaded anonymizer) adds the re-release scopes of the moving clips; ``grid``: the
    attackers searched (the evaluation's by default)."""
    from latentanon.evaluation import scopes

    if not seeds:
        raise ValueError("audit: at least one seed is needed")
    result: dict = {"sets": sorted(sets), "seeds": list(seeds), "confidence": confidence, "scopes": {}, "skipped": {}}
    one_release: dict[str, tuple[list[FeatureSet], list[dict]]] = {}
    plan = [(scope, kind, False) for scope, kind in SCOPES.items()]
    plan += [(scope, kind, True) for scope, kind in VIDEO_MEAN_SCOPES.items()]
    for scope, kind, per_video_mean in plan:
        members = [fs for fs in sets.values() if kind in fs.arrays and len(fs)]
        measured = _scope_runs(members, kind, seeds, per_video_mean, scope, grid) if members else None
        if measured is None:
            if per_video_mean:
                result["skipped"][scope] = f"no labelled set holds {kind!r} features with a shared private label"
            continue
        runs, papers = measured
        one_release[scope] = (members, runs)
        result["scopes"][scope] = _scope_block(members, runs, papers, confidence, n_resamples)
    if method is not None and "moving" in one_release:
        members, _ = one_release["moving"]
        published = scopes.publisher(method)
        if all(scopes.releases_identical(published, fs.subset(np.arange(min(len(fs), 8)))) for fs in members):
            result["rerelease"] = {
                "method": getattr(method, "name", "?"),
                "releases": list(releases),
                "deterministic": True,
            }
            releases = ()
        else:
            result["rerelease"] = {
                "method": getattr(method, "name", "?"),
                "releases": list(releases),
                "deterministic": False,
            }
        series = [scopes.averaged_releases(published, fs, releases) for fs in members] if releases else []
        for r in releases:
            averaged = [by_count[int(r)] for by_count in series]
            for scope, reference, per_video_mean in (
                (f"rerelease{r}", "moving", False),
                (f"rerelease{r}_video_mean", "moving_video_mean", True),
            ):
                if reference not in one_release:
                    continue
                measured = _scope_runs(averaged, "clips", seeds, per_video_mean, scope, grid)
                if measured is None:
                    continue
                runs = measured[0]
                block = _scope_block(averaged, runs, [], confidence, n_resamples)
                block["normalized_leakage"] = _paired_leakage(one_release[reference][1], runs, confidence, n_resamples)
                block["reference"] = reference
                result["scopes"][scope] = block
    if not result["scopes"]:
        raise DataError(f"audit: sets {sorted(sets)} hold neither static nor moving clips with private labels")
    return result


def _spec(attacker: dict) -> str:
    tags = [
        attacker["name"],
        str(attacker["hidden"]) if attacker["hidden"] else "",
        "ZCA" if attacker.get("whiten") else "",
        f"x{attacker.get('depth', 1)}" if attacker.get("depth", 1) > 1 else "",
    ]
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
        paper = b.get("paper_protocol")
        lines.append(
            f"| {scope} | {figure(b['cmap']['mean'])} | {figure(b['chance']['mean'])} | "
            f"{figure(above['mean'])} [{figure(above['low'])}, {figure(above['high'])}] | "
            f"{figure(paper['cmap']['mean']) if paper else '-'} | {b['n_test_items']} |"
        )
    lines += [
        "",
        "`<kind>_video_mean`: attackers trained and scored on each video's mean feature (what a user "
        "shares with a whole video).",
    ]
    for scope, why in result.get("skipped", {}).items():
        lines.append(f"Scope `{scope}` skipped: {why}.")
    rerelease = result.get("rerelease")
    if rerelease:
        lines += ["", f"## Re-release through method `{rerelease['method']}`", ""]
        if rerelease["deterministic"]:
            lines.append(
                "Publishing twice gave identical features: every re-release is the first release, "
                "so R releases were not drawn."
            )
        else:
            lines += [
                f"The moving clips published {', '.join(map(str, rerelease['releases']))} times through the "
                "method's publish path (fresh noise each time), averaged per clip: normalised leakage "
                "(cMAP - chance) / (the store's own cMAP - chance) in the same scope, paired bootstrap.",
                "",
                "| scope | normalised leakage | against |",
                "|---|---|---|",
            ]
            for scope, b in result["scopes"].items():
                if "normalized_leakage" in b:
                    n = b["normalized_leakage"]
                    lines.append(
                        f"| {scope} | {figure(n['mean'])} [{figure(n['low'])}, {figure(n['high'])}] | {b['reference']} |"
                    )
    for scope, b in result["scopes"].items():
        lines += [
            "",
            f"## {scope.capitalize()} clips, per attribute",
            "",
            "| attribute | mAP | chance | attacker chosen on validation |",
            "|---|---|---|---|",
        ]
        for a, v in b["attributes"].items():
            chosen = sorted({_spec(s) for s in v["attackers"]})
            lines.append(f"| {a} | {figure(v['map']['mean'])} | {figure(v['chance']['mean'])} | {', '.join(chosen)} |")
    lines += [
        "",
        "A leak well above chance here is what an anonymizer must remove; `latentanon evaluate` "
        "reports the same attacks on anonymized features as normalised leakage against these figures.",
        "",
    ]
    return write_text_atomic(path, "\n".join(lines))


def audit(
    uri: str,
    out_dir: str | Path,
    seeds: list[int],
    confidence: float = 0.95,
    n_resamples: int = 1000,
    method_dir: str | Path | None = None,
) -> dict:
    """Audit the store at ``uri``; writes ``out_dir``/audit.json and audit.md; returns a summary.
    ``method_dir``: a saved method (``method.json`` + weights) whose re-releases are attacked too."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    method = None
    if method_dir is not None:
        from latentanon.methods.registry import load_method

        method = load_method(Path(method_dir))
    result = audit_sets(labelled_sets(uri), list(seeds), confidence, n_resamples, method)
    result["features_uri"] = str(uri)
    write_json_atomic(out_dir / "audit.json", result)
    write_audit_report(result, uri, out_dir / "audit.md")
    return {
        "features_uri": str(uri),
        "report": str(out_dir / "audit.md"),
        "cmap": {s: b["cmap"]["mean"] for s, b in result["scopes"].items()},
        "chance": {s: b["chance"]["mean"] for s, b in result["scopes"].items()},
        "cmap_above_chance_interval": {
            s: [b["cmap_above_chance"]["low"], b["cmap_above_chance"]["high"]] for s, b in result["scopes"].items()
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
