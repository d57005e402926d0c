"""``rotation``: a random orthogonal rotation of the features, the control of every evaluation.

It keeps every bit of information (a linear map undoes it), so a sound measurement reads
normalised leakage 1, feature-recovery R^2 1 and no utility change within its intervals; what it
reads instead is the measurement's noise floor."""

from __future__ import annotations

import numpy as np

from latentanon.methods.base import Method


class RotationMethod(Method):
    def _fit(self, sets, seed, checkpoint_dir) -> None:
        assert self.dim is not None  # fit() sets it before _fit
        rng = np.random.default_rng([seed, self.dim])
        q, r = np.linalg.qr(rng.standard_normal((self.dim, self.dim)))
        self.matrix = (q * np.sign(np.diag(r))).astype(np.float32)  # a uniformly random rotation

    def _transform_kind(self, kind, items, ids):
        return [np.asarray(a, dtype=np.float32) @ self.matrix for a in items]

    def state(self):
        return {"matrix": self.matrix}

    def set_state(self, state) -> None:
        self.matrix = np.asarray(state["matrix"], dtype=np.float32)
