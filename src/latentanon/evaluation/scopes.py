"""What a user shares, attacked scope by scope (DESIGN.md section 4).

A user shares single clips (the ``static`` and ``moving`` per-clip attacks of ``privacy.attack``),
whole videos (every clip of a trimmed video, every snippet of a long one) and may publish the same
videos again later. Per scope here:
- ``<set>_video_mean``: attackers trained and scored on each video's mean feature (the privacy
  videos' moving clips, the untrimmed and anomaly sets' snippet sequences where their records
  carry private labels);
- ``rerelease<R>`` / ``rerelease<R>_video_mean``: the privacy videos published R times through the
  method's real publish path (``Method.transform`` with fresh operating-system noise, what the
  anonymize and train stages write), averaged per clip, attacked per clip and per video mean;
- the floor (``posterior_sets``): the same attacks on the raw features' seen-task posteriors,
  what any method that keeps every seen task's utility must leak.
Each scope is normalised against raw in the same scope (``RAW_REFERENCE``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet
from latentanon.tasks.private import ATTRIBUTES

MOVING_SET = "privacy_videos"
# scope -> (set, kind) attacked on per-video means
VIDEO_MEAN_SCOPES: dict[str, tuple[str, str]] = {
    "moving_video_mean": (MOVING_SET, "clips"),
    "untrimmed_video_mean": ("untrimmed", "snippets"),
    "anomaly_video_mean": ("anomaly", "snippets"),
}
RELEASES = (16, 64)
PUBLISH_ENTROPY = 2026  # tags the evaluation's streams of fresh publish noise (``publisher``)
SCOPES_VERSION = 1  # evaluate's resume fingerprint: results measured before the scopes are redone
PER_CLIP_SCOPES = ("static", "moving")  # measured by the evaluation's per-clip attacks


def rerelease_scopes(releases: Sequence[int] = RELEASES) -> tuple[str, ...]:
    return tuple(s for r in releases for s in (f"rerelease{r}", f"rerelease{r}_video_mean"))


def scope_names(releases: Sequence[int] = RELEASES) -> tuple[str, ...]:
    """Every scope, in the order reports list them."""
    return (*PER_CLIP_SCOPES, *VIDEO_MEAN_SCOPES, *rerelease_scopes(releases))


def raw_reference(scope: str) -> str:
    """The raw scope a scope is normalised against: raw published R times is raw published once."""
    if scope.startswith("rerelease"):
        return "moving_video_mean" if scope.endswith("_video_mean") else "moving"
    return scope


def _labelled_test(fs: FeatureSet, kind: str, attributes: Sequence[str]) -> None:
    """Refuse a set whose test split has no known private label: its cMAP would be undefined."""
    test = fs.split("test")
    known = [
        a
        for a in attributes
        if a in test.records.columns and (test.records[a].to_numpy(dtype=np.float64, na_value=np.nan) >= 0).any()
    ]
    if not known or kind not in fs.arrays:
        raise DataError(f"feature set {fs.name!r}: no {kind!r} test video carries a known private label")


def attack_scope(
    fs: FeatureSet,
    kind: str,
    seed: int,
    per_video_mean: bool,
    attributes: Sequence[str] = ATTRIBUTES,
    grid: Sequence | None = None,
) -> dict:
    """``privacy.attack`` on one set's ``kind``; ``{"skipped": why}`` when the set carries no
    private labels to train or score on (reported, never read as a pass)."""
    from latentanon.evaluation.privacy import attack

    try:
        present = tuple(a for a in attributes if a in fs.records.columns)
        if not present:
            raise DataError(f"feature set {fs.name!r}: no private label column ({', '.join(attributes)})")
        _labelled_test(fs, kind, present)
        return attack(
            fs.split("train"),
            fs.split("val"),
            fs.split("test"),
            present,
            seed,
            kind,
            per_video_mean=per_video_mean,
            **({"grid": tuple(grid)} if grid else {}),
        )
    except DataError as exc:
        return {"skipped": str(exc)}


def publisher(method, entropy: int | None = None):
    """A copy of ``method`` that publishes as the anonymize stage does: a fresh, independent draw on
    every call of ``noise_rng`` (every release, video and kind), whatever keyed noise the evaluation
    switched on for its own figures. Keyed noise would repeat the same draw on every release; this
    never does. ``entropy`` (evaluation only) roots those fresh streams in a seed instead of the
    operating system, so that the figures reproduce run to run; None: operating-system entropy."""
    if method is None:
        return None
    published = copy.copy(method)
    published.reproducible_noise = False
    if entropy is not None:
        root = np.random.SeedSequence([PUBLISH_ENTROPY, int(entropy)])
        published.noise_rng = lambda video_id, kind: np.random.default_rng(root.spawn(1)[0])
    return published


def releases_identical(method, fs: FeatureSet) -> bool:
    """Whether two publications of ``fs`` are identical (a deterministic method: R releases are one)."""
    if method is None:
        return True
    first, second = method.transform(fs), method.transform(fs)
    return all(np.array_equal(a, b) for kind in first.arrays for a, b in zip(first.arrays[kind], second.arrays[kind]))


def averaged_releases(method, fs: FeatureSet, releases: Sequence[int]) -> dict[int, FeatureSet]:
    """R -> ``fs`` published R times by ``method`` (fresh noise each time), averaged per clip, for
    every R in ``releases``: one series of publications serves them all (the first R releases of
    the largest count)."""
    counts = sorted({int(r) for r in releases})
    if not counts or counts[0] < 1:
        raise ValueError(f"averaged_releases: each count of releases must be at least 1, got {list(releases)}")
    total: dict[str, list[np.ndarray]] = {}
    out: dict[int, FeatureSet] = {}
    for done in range(1, counts[-1] + 1):
        published = method.transform(fs)
        arrays = {k: [np.asarray(a, dtype=np.float64) for a in v] for k, v in published.arrays.items()}
        total = arrays if not total else {k: [t + a for t, a in zip(total[k], arrays[k])] for k in total}
        if done in counts:
            out[done] = published.with_arrays(
                {k: [(a / done).astype(np.float32) for a in v] for k, v in total.items()}, releases=done
            )
    return out


def measure_scopes(
    sets: Mapping[str, FeatureSet],
    seed: int,
    method=None,
    raw: Mapping[str, FeatureSet] | None = None,
    releases: Sequence[int] = RELEASES,
    one_release: Mapping[str, dict] | None = None,
    grid: Sequence | None = None,
    entropy: int | None = None,
) -> dict:
    """Per scope beyond the per-clip ones: the attack result (with ``items``) or ``{"skipped": why}``.

    ``sets``: one release of a method's features; ``method`` (None for raw) and ``raw`` (the raw
    privacy videos) give the re-release scopes; ``one_release``: the ``moving`` per-clip result
    already measured, which a deterministic method's per-clip re-release scopes repeat; ``entropy``:
    the root of the fresh publish noise (``publisher``)."""
    out: dict[str, dict] = {}
    for scope, (set_name, kind) in VIDEO_MEAN_SCOPES.items():
        out[scope] = (
            attack_scope(sets[set_name], kind, seed, True, grid=grid)
            if set_name in sets
            else {"skipped": f"no {set_name!r} feature set"}
        )
    if not releases:
        return out
    source = (raw or {}).get(MOVING_SET)
    published = publisher(method, entropy)
    if (
        published is None
        or source is None
        or releases_identical(published, source.subset(np.arange(min(len(source), 8))))
    ):
        # deterministic: every release is the first, so each re-release scope repeats its one-release figure
        why = (
            "no publishing method: one release is all there is"
            if method is None
            else f"method {getattr(method, 'name', '?')} publishes identical features on every release"
        )
        for r in releases:
            for scope in (f"rerelease{r}", f"rerelease{r}_video_mean"):
                reference = (one_release or {}).get(raw_reference(scope)) or out.get(raw_reference(scope))
                if reference is None:
                    reference = attack_scope(sets[MOVING_SET], "clips", seed, False, grid=grid)
                out[scope] = {**reference, "deterministic": why, "releases": int(r)}
        return out
    series = averaged_releases(published, source, releases)
    for r in releases:
        averaged = series[int(r)]
        out[f"rerelease{r}"] = {**attack_scope(averaged, "clips", seed, False, grid=grid), "releases": int(r)}
        out[f"rerelease{r}_video_mean"] = {**attack_scope(averaged, "clips", seed, True, grid=grid), "releases": int(r)}
    return out


# ----------------------------------------------------------------------------- the floor


def fitted_seen_heads(
    sets: Mapping[str, FeatureSet], utility: Mapping[str, dict], tasks: Sequence[str], seed: int
) -> dict[str, list]:
    """The heads ``score_task`` kept for each seen task (refitted with the kind, hyper-parameters and
    input form it chose on val: the fit is seeded, so these are the same heads)."""
    from latentanon.tasks.annotations import tad_vocabulary
    from latentanon.tasks.fitting import fit_heads
    from latentanon.tasks.specs import TASK_SPECS

    heads = {}
    for task in tasks:
        result = utility.get(task)
        spec = TASK_SPECS[task]
        if result is None or spec.set_name not in sets:
            continue
        train = sets[spec.set_name].split("train")
        vocabulary = tad_vocabulary(train) if task == "tad" else None
        heads[task] = fit_heads(
            task,
            train,
            result["selected"],
            seed,
            result.get("restarts", 1),
            vocabulary,
            result.get("inputs", "standardised"),
        )
    return heads


def _posteriors(heads: Mapping[str, list], items: list[np.ndarray]) -> list[np.ndarray]:
    """Per video, per row: every head's output on that row (AR and TAD log-probabilities, AD logit)."""
    import torch

    pieces = []
    with torch.no_grad():
        for task, fitted in heads.items():
            x, mask = fitted[0].inputs.padded(items)
            outs = []
            for h in fitted:
                if task == "ar":
                    outs.append(torch.log_softmax(h.head(x), dim=-1).numpy())
                elif task == "tad":
                    outs.append(torch.log(h.head.probabilities(x, mask).clamp_min(1e-6)).numpy())
                else:
                    score = h.head(x, mask).clamp(1e-6, 1 - 1e-6)
                    outs.append(torch.log(score / (1 - score))[..., None].numpy())
            pieces.append(np.mean(outs, axis=0))
    joined = np.concatenate(pieces, axis=-1)
    return [joined[i, : len(a)].astype(np.float32) for i, a in enumerate(items)]


def posterior_sets(sets: Mapping[str, FeatureSet], heads: Mapping[str, list]) -> dict[str, FeatureSet]:
    """The scopes' sets with every moving kind replaced by the seen-task heads' outputs on it."""
    if not heads:
        raise DataError("floor: no seen task's head to read posteriors from")
    out = {}
    for name in dict.fromkeys([MOVING_SET, *(s for s, _ in VIDEO_MEAN_SCOPES.values())]):
        if name not in sets:
            continue
        fs = sets[name]
        arrays: dict[str, list[np.ndarray]] = {
            kind: _posteriors(heads, [np.asarray(a, dtype=np.float32) for a in fs.arrays[kind]])
            for kind in ("clips", "snippets")
            if kind in fs.arrays and len(fs.arrays[kind])
        }
        if arrays:
            out[name] = fs.with_arrays(arrays, posteriors=sorted(heads))
    return out


def floor_scopes(raw: Mapping[str, FeatureSet], utility: Mapping[str, dict], tasks: Sequence[str], seed: int) -> dict:
    """The floor: attacks on the raw seen-task posteriors, per clip of the privacy videos and per
    video mean in every video-mean scope (each normalised later against raw in the same scope)."""
    posteriors = posterior_sets(raw, fitted_seen_heads(raw, utility, tasks, seed))
    out = {
        "moving": (
            attack_scope(posteriors[MOVING_SET], "clips", seed, False)
            if MOVING_SET in posteriors
            else {"skipped": f"no {MOVING_SET!r} feature set"}
        )
    }
    out.update(measure_scopes(posteriors, seed, releases=()))
    return out
