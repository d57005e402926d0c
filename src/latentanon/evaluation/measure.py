"""One method's privacy and utility figures for one seed, on the feature sets it published.

Privacy: attackers on static and moving clips, the paper's protocol beside them, re-identification
and gait retrieval, the re-release scopes and (raw only) the floor; utility: every task through
``latentanon.tasks.scoring.score_task``. Also which sets a store must hold, and how they load.
"""

from __future__ import annotations

from collections.abc import Mapping

from latentanon.data.layouts import PRIVACY_SETS
from latentanon.errors import StoreError
from latentanon.evaluation import reid, scopes
from latentanon.evaluation.privacy import ATTRIBUTES, attack, paper_protocol_attack
from latentanon.evaluation.recovery import recovery_attack
from latentanon.features.featureset import FeatureSet

MOVING_PRIVACY_SET = "privacy_videos"


def task_sets() -> dict[str, str]:
    """Utility task -> the feature set it is scored on."""
    from latentanon.tasks.specs import TASK_SPECS, TASKS

    return {task: TASK_SPECS[task].set_name for task in TASKS}


def needed_sets() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*PRIVACY_SETS, *task_sets().values()]))


def load_sets(uri: str, names: tuple[str, ...]) -> dict[str, FeatureSet]:
    """The named sets of a store; the privacy sets and every task set must be there."""
    from latentanon.features.store import list_feature_sets, load_feature_set

    available = set(list_feature_sets(uri))
    missing = [n for n in names if n not in available and n != "privacy_images"]
    if missing:
        raise StoreError(f"{uri}: feature set(s) {missing} missing (store has {sorted(available)})")
    return {n: load_feature_set(uri, n) for n in names if n in available}


def align_release(
    raw: Mapping[str, FeatureSet], anonymized: Mapping[str, FeatureSet], uri: str
) -> dict[str, FeatureSet]:
    """The released features with the raw store's records (labels and private attributes).

    A release carries opaque video ids and task columns only; it mirrors the raw store row for
    row, which ``with_source_records`` checks on every task column both hold."""
    from latentanon.features.release import with_source_records

    out = {}
    for name, fs in raw.items():
        if name not in anonymized:
            raise StoreError(f"{uri}: anonymized store lacks feature set {name!r}; re-run the train stage")
        out[name] = with_source_records(anonymized[name], fs, uri)
    return out


def _splits(sets: list[FeatureSet], split: str) -> list[FeatureSet]:
    return [fs.split(split) for fs in sets]


def measure(
    sets: Mapping[str, FeatureSet],
    seed: int,
    raw: Mapping[str, FeatureSet] | None = None,
    heads: Mapping | None = None,
    method=None,
    floor_tasks: tuple[str, ...] = (),
    releases: tuple[int, ...] = scopes.RELEASES,
) -> dict:
    """Every privacy and utility figure of one method's features for one seed.

    ``raw`` (the same sets unanonymized) adds the feature-recovery attack and, with ``method`` (what
    published ``sets``), the re-release scopes; ``heads``: ``score_task``'s head protocol
    (``restarts``, ``inputs``); ``floor_tasks`` (raw only): the seen tasks whose heads' posteriors
    the floor attacks. The result's ``items`` hold per-test-item arrays for the paired intervals."""
    from latentanon.tasks.scoring import score_task

    privacy_sets = [sets[n] for n in PRIVACY_SETS if n in sets]
    static = attack(
        _splits(privacy_sets, "train"),
        _splits(privacy_sets, "val"),
        _splits(privacy_sets, "test"),
        ATTRIBUTES,
        seed,
        "static",
    )
    moving_set = sets[MOVING_PRIVACY_SET]
    moving = attack(
        moving_set.split("train"), moving_set.split("val"), moving_set.split("test"), ATTRIBUTES, seed, "clips"
    )
    paper = {
        "static": paper_protocol_attack(
            _splits(privacy_sets, "train"), _splits(privacy_sets, "test"), ATTRIBUTES, seed, "static"
        ),
        "moving": paper_protocol_attack(moving_set.split("train"), moving_set.split("test"), ATTRIBUTES, seed, "clips"),
    }
    utility, utility_items = {}, {}
    for task, set_name in task_sets().items():
        fs = sets[set_name]
        result = score_task(
            task, fs.split("train"), fs.split("val"), fs.split("test"), seed, items=True, **(heads or {})
        )
        utility_items[task] = result.pop("items")
        utility[task] = result
    scope_results = scopes.measure_scopes(sets, seed, method, raw, releases, {"moving": moving}, entropy=seed)
    floor = scopes.floor_scopes(sets, utility, floor_tasks, seed) if floor_tasks else {}
    out = {
        "privacy": {
            "static": {k: v for k, v in static.items() if k != "items"},
            "moving": {k: v for k, v in moving.items() if k != "items"},
            "paper_protocol": paper,
            "reid": reid.reidentification(_splits(privacy_sets, "test")),
            "gait": reid.gait_retrieval(moving_set.split("test")),
        },
        "utility": utility,
        "items": {"static": static["items"], "moving": moving["items"], "utility": utility_items},
    }
    for key, measured in (("scopes", scope_results), ("floor", floor)):
        if measured:
            out["privacy"][key] = {k: {f: v for f, v in r.items() if f != "items"} for k, r in measured.items()}
            out["items"][key] = {k: r["items"] for k, r in measured.items() if "items" in r}
    if raw is not None:
        names = [n for n in PRIVACY_SETS if n in sets and n in raw]
        out["privacy"]["recovery"] = recovery_attack({n: sets[n] for n in names}, {n: raw[n] for n in names})
    return out
