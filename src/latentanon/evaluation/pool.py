"""Measuring (seed, method) pairs in worker processes, and the baseline fits they need."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from latentanon.evaluation.measure import measure
from latentanon.features.featureset import FeatureSet
from latentanon.methods.registry import create_method


def _pool_worker_init() -> None:
    import torch

    torch.set_num_threads(1)


SHARED_FIT = None  # key of the fitted baselines that serve every seed (evaluate.refit_baselines false)


def fit_baseline(name: str, train, raw: Mapping[str, FeatureSet], seed: int):
    """One baseline fitted on the raw sets (module level: a pool worker runs it)."""
    return create_method(name, train).fit(raw, seed=seed)


def measure_in_pool(
    todo,
    method_sets,
    record,
    bar,
    workers: int,
    extra=lambda method, seed: {},
    refit: bool = True,
    fit_jobs: Mapping[str, tuple] | None = None,
    side_jobs: Mapping | None = None,
) -> dict:
    """Measure (seed, method) pairs in worker processes while this one prepares the next ones.

    Workers are spawned (not forked: torch's thread pools do not survive a fork safely) and each
    gets one method's transformed sets; results are recorded as they arrive, so a killed run
    resumes from what finished. ``refit`` false: one fitted baseline serves every seed, and
    ``fit_jobs`` (method -> arguments of ``fit_baseline``) fits those in the workers too, while the
    pairs that need no fit are measured: a long fit no longer leaves the other worker idle.
    ``side_jobs`` (key -> (function, arguments)) run in the same workers; returns key -> result.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    pending: dict[Future[dict], tuple[str, int]] = {}  # measure -> (method, seed)
    fitting: dict[Future[Any], str] = {}  # fit_baseline -> method
    side: dict[Future[Any], Any] = {}  # side job -> its key
    side_results: dict[Any, Any] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_pool_worker_init) as pool:
        fitted_by_seed: dict[int | None, dict] = {}
        if not refit:
            for method, args in (fit_jobs or {}).items():
                if any(m == method for _, m in todo):
                    fitting[pool.submit(fit_baseline, *args)] = method
        for key, (function, args) in (side_jobs or {}).items():
            side[pool.submit(function, *args)] = key
        queue = list(todo)
        while queue or pending or fitting or side:
            waiting = set(fitting.values())
            ready = next((i for i, (_, m) in enumerate(queue) if m not in waiting), None)
            # At most one job running and one queued per worker: bounded memory, early partial results.
            if ready is not None and len(pending) < 2 * workers:
                seed, method = queue.pop(ready)
                sets = method_sets(method, seed, fitted_by_seed.setdefault(seed if refit else SHARED_FIT, {}))
                pending[pool.submit(measure, sets, seed, **extra(method, seed))] = (method, seed)
                continue
            done, _ = wait([*pending, *fitting, *side], return_when=FIRST_COMPLETED)
            for future in done:
                if future in fitting:
                    fitted_by_seed.setdefault(SHARED_FIT, {})[fitting.pop(future)] = future.result()
                    continue
                if future in side:
                    side_results[side.pop(future)] = future.result()
                    continue
                method_done, seed_done = pending.pop(future)
                record(method_done, seed_done, future.result())
                bar.update(1)
    return side_results
