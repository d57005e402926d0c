"""``identity``: share the raw features unchanged (the leakage every method is measured against)."""

from __future__ import annotations

import numpy as np

from latentanon.methods.base import Method


class IdentityMethod(Method):
    def _fit(self, sets, seed, checkpoint_dir) -> None:
        return None

    def _transform_kind(self, kind, items, ids):
        return [np.array(a, dtype=np.float32, copy=True) for a in items]

    def state(self):
        return {}

    def set_state(self, state) -> None:
        return None
