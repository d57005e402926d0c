"""Config of MLflow tracking and of the ``gate`` stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else sqlite:///<workdir>/mlflow.db
    experiment: str = "latentanon"
    model_name: str = "latentanon-aam"


@dataclass(frozen=True)
class GateConfig:
    max_normalized_leakage: float = 0.4
    # moving clips are what users share: the static-clip protocol alone can pass features whose
    # moving clips still leak (measured: small noise does exactly that)
    max_moving_normalized_leakage: float = 0.4
    min_relative_cmap_drop: float = 0.2
    max_utility_relative_drop: float = 0.01
    require_bias_gap_not_larger: bool = True
    utility_tasks: tuple[str, ...] = ("ar", "tad", "ad")  # each needs utility.<task>.trained_relative_drop
    bias_raw_gap_key: str = "bias.raw.gap"  # dotted keys into reports/metrics.json
    bias_trained_gap_key: str = "bias.trained.gap"  # was bias_aam_gap_key (see RENAMED_KEYS)
    champion_leakage_tolerance: float = 0.0  # candidate leakage may exceed the champion's by this much


# Keys of the gate section an earlier release named otherwise: old -> new. A params file (or an
# override) with the old name still loads for one release, with a DeprecationWarning
# (latentanon.config); a dotted metrics key it names is read with the current labels by the gate.
RENAMED_KEYS = {"bias_aam_gap_key": "bias_trained_gap_key"}


@dataclass(frozen=True)
class TrackedParams:
    """What the tracking layer reads of the params: its own section, the gate's, and every param
    in plain form (logged once to the pipeline's parent run; their hash says which run they
    belong to). The entry points build it (``Params.tracked``): Params sits above this layer."""

    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    plain: dict[str, Any] = field(default_factory=dict, hash=False)
