"""The utility task table: the feature set, kind, labels and metric of each task, and the
hyper-parameter grid its head is chosen from. Imports nothing heavy.

| task | feature set | kind     | labels                                | metric                              |
|------|-------------|----------|---------------------------------------|-------------------------------------|
| ar   | actions     | clips    | ``label_id``                          | top-1 of softmax averaged over clips |
| tad  | untrimmed   | snippets | ``segments`` [start_s, end_s, label]  | mAP averaged over tIoU 0.3:0.1:0.7  |
| ad   | anomaly     | snippets | ``anomaly`` (video), test ``segments`` | frame-level ROC AUC                 |
"""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("ar", "tad", "ad")


@dataclass(frozen=True)
class TaskSpec:
    set_name: str
    kind: str
    metric: str
    grid: tuple[dict, ...]  # hyper-parameter choices tried; the first is the default


TASK_SPECS: dict[str, TaskSpec] = {
    "ar": TaskSpec(
        "actions", "clips", "top1", ({"weight_decay": 1e-4}, {"weight_decay": 1e-2}, {"weight_decay": 1e-1})
    ),
    "tad": TaskSpec(
        "untrimmed",
        "snippets",
        "mAP@tIoU0.3:0.7",
        ({"hidden": 64, "weight_decay": 1e-3}, {"hidden": 128, "weight_decay": 1e-2}),
    ),
    # hidden 128 / decay 1e-2 scored lower on val on average and doubled the cost of each kernel
    "ad": TaskSpec(
        "anomaly",
        "snippets",
        "frame_roc_auc",
        ({"hidden": 64, "weight_decay": 1e-3, "kernel": 3}, {"hidden": 64, "weight_decay": 1e-3, "kernel": 5}),
    ),
}
# Bump when the same features would be measured differently (heads, their grids, attackers,
# metrics): tune's study name and evaluate's resume fingerprint carry it, so figures measured
# the old way are never mixed with new ones.
MEASUREMENT_VERSION = 3  # 2: temporal AD head; 3: its grid of two kernels


# set name -> (moving kind, task it carries): what a method co-trains task heads on.
TRAINING_SETS: dict[str, tuple[str, str]] = {spec.set_name: (spec.kind, task) for task, spec in TASK_SPECS.items()}


def _spec(task: str) -> TaskSpec:
    if task not in TASK_SPECS:
        raise KeyError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    return TASK_SPECS[task]
