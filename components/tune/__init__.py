from components.tune.component import tune_select, tune_trials, tune_workers

__all__ = ["tune_workers", "tune_trials", "tune_select"]
