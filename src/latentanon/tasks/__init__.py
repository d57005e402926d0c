"""The utility tasks (AR, TAD, AD) and the private-attribute targets: targets, heads, scoring.

Below both methods (which co-train task heads) and evaluation (which scores them), so neither
reaches into the other. See ``latentanon.tasks.scoring`` for the task table.
"""
from latentanon.tasks.private import ATTRIBUTES, AttackData, attack_data
from latentanon.tasks.scoring import (
    TASK_SPECS,
    TASKS,
    TRAINING_SETS,
    TaskSpec,
    evaluate_head,
    fit_head,
    score_task,
    tad_targets,
    tad_vocabulary,
    validation_utility,
)

__all__ = [
    "ATTRIBUTES", "AttackData", "attack_data", "TASK_SPECS", "TASKS", "TRAINING_SETS", "TaskSpec",
    "evaluate_head", "fit_head", "score_task", "tad_targets", "tad_vocabulary", "validation_utility",
]
