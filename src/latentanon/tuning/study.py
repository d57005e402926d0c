"""A resumable, deterministic Optuna study, whatever the objective.

Sequential mode (one worker at a time; the default sqlite study): every trial's parameters are a
function of the seed, its *slot* (how many completed trials the study held when it started) and
the completed history. Each trial gets a fresh TPE sampler seeded from (seed, slot), and failed
trials never enter the history the sampler reads. So a trial killed or failed in slot k is
re-run with the same parameters, and a study resumed after a kill proposes, measures and chooses
exactly what the uninterrupted study does. On start-up, trials a killed worker left RUNNING are
marked FAIL at once (no other worker can be running them).

Batched sequential mode (``optimize_in_batches``): one process asks a batch of trials, has them
measured at once elsewhere, and tells them in order. The trials of a batch take slots c, c+1, ...
(c completed trials) and see only the c completed ones; a failure anywhere in the batch fails the
whole batch, so a re-run proposes it again identically.

Parallel mode (several workers against one shared server database, as the Kubeflow tune
fan-out): a RUNNING trial may belong to a live worker, so only trials whose heartbeat stopped
(silent for 2 x ``heartbeat_seconds``) are marked FAIL. Trials are seeded from (seed, trial
number), which is unique across workers, so no two workers draw the same parameters; which
worker finishes which trial first is a race, so the proposals (and with them the chosen point)
are reproducible only in sequential mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

SLOT_ATTR = "slot"  # completed trials before this one (sequential mode)
Direction = Literal["minimize", "maximize"]  # optuna's objective directions


def is_sequential(storage_url: str) -> bool:
    """A sqlite study has one worker (the Kubeflow fan-out runs several only on a server database)."""
    return storage_url.startswith("sqlite")


def derived_seed(seed: int, key: int, parallel: bool = False) -> int:
    """A 32-bit seed for one trial's sampler, well mixed from the study seed and the trial's key."""
    return int(np.random.SeedSequence([seed, key, int(parallel)]).generate_state(1)[0])


def completed(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def sequential_slot(study, trial) -> int:
    """Completed trials, plus the running trials of this batch asked before ``trial`` (in
    sequential mode every other running trial was failed when the study was opened)."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return len(completed(study)) + sum(1 for t in running if t.number < trial.number)


def _make_sampler(seed: int, n_startup_trials: int, sequential: bool):
    from optuna.samplers import BaseSampler, TPESampler

    class TrialSeededSampler(BaseSampler):
        """A fresh TPE sampler per trial, seeded from (seed, slot) or, in parallel mode, (seed, number).

        TPE reads only COMPLETE (and PRUNED) trials, so failed and running ones do not change
        what it proposes; re-creating it per trial keeps no random state across trials.
        """

        def __init__(self) -> None:
            self._inner = TPESampler(seed=derived_seed(seed, 0), n_startup_trials=n_startup_trials)

        def before_trial(self, study, trial) -> None:
            key = sequential_slot(study, trial) if sequential else trial.number
            self._inner = TPESampler(
                seed=derived_seed(seed, key, parallel=not sequential), n_startup_trials=n_startup_trials
            )
            self._inner.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self._inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:  # the seed is derived per trial; nothing to re-seed
            pass

    return TrialSeededSampler()


def fail_interrupted_trials(study) -> list[int]:
    """Mark every RUNNING trial FAIL (sequential mode only: its worker is gone); their numbers."""
    from optuna.trial import TrialState

    numbers = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in numbers:
        study.tell(number, state=TrialState.FAIL)
    return numbers


def open_study(
    storage_url: str,
    study_name: str,
    directions: list[Direction],
    seed: int,
    n_startup_trials: int,
    heartbeat_seconds: int,
):
    """Create or load the study, fail what a killed worker left behind, attach the seeded sampler."""
    import optuna

    sequential = is_sequential(storage_url)
    if storage_url.startswith("sqlite:///"):
        Path(storage_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = {"connect_args": {"timeout": 60}}  # workers sharing one sqlite file wait for the lock
    else:
        engine = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat is "experimental"
        storage = optuna.storages.RDBStorage(
            storage_url,
            engine_kwargs=engine,
            heartbeat_interval=heartbeat_seconds,
            grace_period=2 * heartbeat_seconds,
        )
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions, load_if_exists=True)
    if sequential:
        interrupted = fail_interrupted_trials(study)
        if interrupted:
            tqdm.write(f"tune: trial(s) {interrupted} were interrupted; marked failed, re-run with the same parameters")
    else:
        optuna.storages.fail_stale_trials(study)
    study.sampler = _make_sampler(seed, n_startup_trials, sequential)
    return study


def optimize(study, objective: Callable, n_trials: int, progress_label: str = "tune") -> int:
    """Run trials until the study holds ``n_trials`` completed ones; returns how many ran here.

    Each trial records its slot (user attribute ``slot``); an exception in ``objective`` marks the
    trial FAIL and propagates (the stage fails; its re-run retries that slot with the same
    parameters).
    """
    from optuna.study import MaxTrialsCallback

    done = len(completed(study))
    remaining = n_trials - done
    if remaining <= 0:
        return 0
    bar = tqdm(total=n_trials, initial=done, desc=progress_label, unit="trial", disable=None)
    ran = 0

    def with_slot(trial):
        trial.set_user_attr(SLOT_ATTR, len(completed(study)))
        return objective(trial)

    def on_trial_end(study_, trial) -> None:
        nonlocal ran
        ran += 1
        bar.n = min(n_trials, len(completed(study_)))
        bar.refresh()

    try:
        # Other workers may finish trials first; the callback stops at n_trials completed.
        study.optimize(with_slot, n_trials=2 * remaining + 2, callbacks=[MaxTrialsCallback(n_trials), on_trial_end])
    finally:
        bar.close()
    return ran


def optimize_in_batches(
    study,
    propose: Callable,
    measure: Callable,
    record: Callable,
    n_trials: int,
    batch: int,
    progress_label: str = "tune",
) -> int:
    """Batched sequential mode (see the module doc): until the study holds ``n_trials`` completed
    trials, ask up to ``batch`` trials, ``propose(trial)`` each as soon as it is asked (its
    sampler is replaced by the next ask), ``measure(proposals)`` -> one result per trial, then
    tell each ``record(trial, result)`` (its objective values). Returns how many ran here."""
    from optuna.trial import TrialState

    bar = tqdm(
        total=n_trials, initial=min(n_trials, len(completed(study))), desc=progress_label, unit="trial", disable=None
    )
    ran = 0
    try:
        while (done := len(completed(study))) < n_trials:
            trials, proposals = [], []
            try:
                for k in range(min(batch, n_trials - done)):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)  # heartbeats are for Study.optimize
                        trial = study.ask()
                    trials.append(trial)
                    trial.set_user_attr(SLOT_ATTR, done + k)
                    proposals.append(propose(trial))
                results = measure(proposals)
                values = [record(trial, result) for trial, result in zip(trials, results)]
            except BaseException:
                for trial in trials:
                    study.tell(trial, state=TrialState.FAIL)
                raise
            for trial, value in zip(trials, values):
                study.tell(trial, value)
            ran += len(trials)
            bar.n = min(n_trials, len(completed(study)))
            bar.refresh()
    finally:
        bar.close()
    return ran


def slot_of(trial) -> int:
    """The trial's slot (its number for a study from before slots were recorded)."""
    return int(trial.user_attrs.get(SLOT_ATTR, trial.number))
