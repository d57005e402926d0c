"""The MLflow parent run of a Kubeflow pipeline run: opened by the ``open_run`` task, tagged with
the KFP run id and the gate's verdict, and closed by the exit handler with the run's final state.

The exit handler depends on no task (KFP forbids it), so it finds the parent run again by the
``latentanon.kfp_run_id`` tag.

What the exit handler receives as ``PipelineTaskFinalStatus.state`` depends on who runs it:

- the KFP v2 backend driver (``backend/src/v2/driver/resolve.go``) passes the ML Metadata
  execution state of the exit handler's DAG, ``Execution.State`` by name: ``COMPLETE`` on
  success, ``CACHED``, ``FAILED``, ``CANCELED``, or the non-final ``NEW``, ``RUNNING``,
  ``UNKNOWN``; its ``error`` is an empty object (no message, no code);
- ``kfp.local`` passes ``SUCCEEDED`` or ``FAILED`` (with a message);
- the SDK documents ``SUCCEEDED``, ``FAILED`` and ``CANCELLED``.

Every one of them closes the run. A state nobody documents, or one that is not final, still
closes it (as FAILED, tagged with the state it came with) and logs a warning: the exit handler
never fails because of the words a backend uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from latentanon.tracking.runs import close_pipeline_run

LOG = logging.getLogger(__name__)

TAG_KFP_RUN = "latentanon.kfp_run_id"  # the KFP run a parent MLflow run belongs to
TAG_KFP_STATE = "latentanon.kfp_state"  # the KFP run's final state, as the exit handler got it
TAG_KFP_ERROR = "latentanon.kfp_error"
TAG_KFP_STATE_UNRECOGNISED = "latentanon.kfp_state_unrecognised"
TAG_GATE_DECISION = "latentanon.gate_decision"
MAX_ERROR_CHARS = 4000

# Final states -> MLflow run status.
MLMD_FINAL_STATES = {"COMPLETE": "FINISHED", "CACHED": "FINISHED", "FAILED": "FAILED", "CANCELED": "KILLED"}
MLMD_OPEN_STATES = ("UNKNOWN", "NEW", "RUNNING")  # the rest of ml_metadata's Execution.State
SDK_FINAL_STATES = {"SUCCEEDED": "FINISHED", "FAILED": "FAILED", "CANCELLED": "KILLED", "CANCELED": "KILLED"}
RUN_STATUS = {**SDK_FINAL_STATES, **MLMD_FINAL_STATES}
UNRECOGNISED_STATUS = "FAILED"  # an outcome nobody can vouch for does not read as a success


@dataclass(frozen=True)
class FinalStatus:
    state: str  # as received, upper-cased
    status: str  # the MLflow run status it closes the run with
    recognised: bool


def final_status(state: object) -> FinalStatus:
    """The MLflow status a KFP final state closes the parent run with; never raises."""
    name = str(state or "").strip().upper()
    status = RUN_STATUS.get(name)
    if status is not None:
        return FinalStatus(name, status, True)
    why = "is not a final state" if name in MLMD_OPEN_STATES else "is not a state this project knows"
    LOG.warning(
        "exit handler: KFP final state %r %s (known: %s); closing the MLflow run as %s",
        state,
        why,
        sorted(RUN_STATUS),
        UNRECOGNISED_STATUS,
    )
    return FinalStatus(name or "<empty>", UNRECOGNISED_STATUS, False)


def find_runs(client, kfp_run_id: str) -> list:
    """The MLflow parent runs tagged with this KFP run id (normally one; none if open_run never ran)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    quoted = kfp_run_id.replace("'", "")
    return list(client.search_runs(experiments, filter_string=f"tags.`{TAG_KFP_RUN}` = '{quoted}'"))


def tag_kfp_run(client, run_id: str, kfp_run_id: str) -> None:
    client.set_tag(run_id, TAG_KFP_RUN, kfp_run_id)


def tag_gate_decision(client, run_id: str, decision: str) -> None:
    client.set_tag(run_id, TAG_GATE_DECISION, decision)


def close_kfp_run(client, kfp_run_id: str, state: object, error_message: str = "") -> dict:
    """Close every parent run of this KFP run with the status its final state maps to."""
    final = final_status(state)
    found = find_runs(client, kfp_run_id)
    for run in found:
        run_id = run.info.run_id
        client.set_tag(run_id, TAG_KFP_STATE, final.state)
        if not final.recognised:
            client.set_tag(run_id, TAG_KFP_STATE_UNRECOGNISED, "true")
        if error_message:
            client.set_tag(run_id, TAG_KFP_ERROR, error_message[:MAX_ERROR_CHARS])
        close_pipeline_run(client, run_id, status=final.status)
    return {
        "run_ids": sorted(r.info.run_id for r in found),
        "closed": bool(found),
        "status": final.status,
        "state": final.state,
        "recognised": final.recognised,
    }
