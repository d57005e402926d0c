"""``leace``: LEACE linear concept erasure (EleutherAI concept-erasure) of every private attribute
at once. Needs private labels: fitted on the privacy sets' train static clips."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from latentanon.data.layouts import PRIVACY_SETS
from latentanon.errors import DataError
from latentanon.methods.base import Method
from latentanon.tasks.private import ATTRIBUTES, attack_data


def private_one_hot(labels: Mapping[str, np.ndarray]) -> np.ndarray:
    """Concatenated one-hot codes of every attribute (an unknown label, -1, is all zeros)."""
    blocks = []
    for values in labels.values():
        values = np.asarray(values)
        width = int(values.max(initial=-1)) + 1
        block = np.zeros((values.shape[0], max(width, 1)))
        known = values >= 0
        block[np.flatnonzero(known), values[known]] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1)


class LeaceMethod(Method):
    """x - P (x - b): an affine map, so a clip's output depends on nothing but the clip."""

    needs_private_labels = True

    def _fit(self, sets, seed, checkpoint_dir) -> None:
        from concept_erasure import LeaceFitter

        train = [sets[name].split("train") for name in PRIVACY_SETS if name in sets]
        if not train:
            raise DataError(f"leace method needs a privacy set ({', '.join(PRIVACY_SETS)}); got {sorted(sets)}")
        data = attack_data(train, ATTRIBUTES, "static")
        concept = private_one_hot({a: v[data.video] for a, v in data.labels.items()})
        eraser = LeaceFitter.fit(torch.from_numpy(data.x.astype(np.float64)), torch.from_numpy(concept)).eraser
        # Store the erasure as one dense affine map x -> x @ A + c (what the eraser computes).
        eye = torch.eye(data.x.shape[1], dtype=torch.float64)
        zero = torch.zeros(1, data.x.shape[1], dtype=torch.float64)
        offset = eraser(zero)
        self.matrix = (eraser(eye) - offset).numpy()
        self.offset = offset[0].numpy()

    def _transform_kind(self, kind, items, ids):
        lengths = [int(np.shape(a)[0]) for a in items]
        stacked = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1, self.dim) for a in items])
        erased = (stacked @ self.matrix + self.offset).astype(np.float32)
        return np.split(erased, np.cumsum(lengths)[:-1])

    def state(self):
        return {"matrix": self.matrix, "offset": self.offset}

    def set_state(self, state) -> None:
        self.matrix = np.asarray(state["matrix"], dtype=np.float64)
        self.offset = np.asarray(state["offset"], dtype=np.float64)
