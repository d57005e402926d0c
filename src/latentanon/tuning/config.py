"""Config of the ``tune`` stage (Optuna loss-weight search)."""

from __future__ import annotations

from dataclasses import dataclass, field

from latentanon.evaluation.config import EvaluateConfig
from latentanon.methods.config import TrainConfig
from latentanon.tracking.config import GateConfig


@dataclass(frozen=True)
class TuneConfig:
    n_trials: int = 12
    seed: int = 0
    storage: str = ""  # SQLAlchemy URL; empty: sqlite file under reports/tune
    study_name: str = "latentanon-aam"
    epochs_per_trial: int = 60
    w_lc_range: tuple[float, float] = (1.0, 300.0)
    w_b_range: tuple[float, float] = (0.1, 10.0)
    w_t_range: tuple[float, float] = (0.1, 10.0)
    max_utility_drop: float = 0.01  # operating-point rule: least leakage with every drop below this
    # past that budget, the rule keeps to trials whose normalised val leakage is at most this (the gate's target)
    max_normalized_leakage: float = 0.4
    temperature_range: tuple[float, ...] = ()  # (low, high) to search the NT-Xent temperature; empty: fixed
    lr_range: tuple[float, ...] = (1e-3, 3e-2)  # (low, high) to search the learning rate; empty: train.lr
    torch_threads: int = 1  # per tune process: tiny models run faster without thread contention; 0 = torch default
    # trials measured at once by this stage, in spawned processes (sqlite study only; the Kubeflow
    # fan-out runs several stages instead): a batch of this many is proposed from the trials
    # completed before it, so the proposals stay a function of the seed and this setting
    workers: int = 1
    heartbeat_seconds: int = 60  # a trial silent for twice this long (killed worker) is marked failed
    # Methods a trial may fit (registry names; a trial picks one when there are several). paper
    # and paper_batch search the loss weights / lr above; noise searches its scale.
    methods: tuple[str, ...] = ("paper",)
    noise_scale_range: tuple[float, ...] = (0.05, 1.0)
    bottleneck_sigma_range: tuple[float, ...] = (0.5, 2.0)
    bottleneck_compaction_range: tuple[float, ...] = (0.1, 10.0)
    fisher_static_weight_range: tuple[float, ...] = (0.1, 30.0)
    distil_ar_step_range: tuple[float, ...] = (0.1, 0.25)


@dataclass(frozen=True)
class SearchParams:
    """The sections the tune stage reads: its own, train (the knobs a trial starts from and the
    seen tasks), evaluate (the heads' input forms) and gate (the thresholds the choice respects).
    The entry points build it (``Params.for_search``): Params sits above this layer."""

    tune: TuneConfig = field(default_factory=TuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    gate: GateConfig = field(default_factory=GateConfig)
