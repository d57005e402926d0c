"""What the method the train stage fitted (``train.method``) is called in the evaluation's figures.

Every figure of that method sits under the label ``trained``: ``privacy.trained.*``,
``utility.<task>.trained`` and ``utility.<task>.trained_relative_drop`` (with its ``_interval``,
``_half_width``, ``_test_videos``, ...), ``utility.<task>.trained_unseen``, ``bias.trained.gap``, the
``trained`` row of the privacy-utility points; its own name is ``trained_method.name``.

Earlier releases labelled it ``aam`` (whatever the method was). Such a metrics tree stays readable
for one release: ``current_keys`` gives it the current labels (a current key wins over an old one)
and ``current_key`` does the same to a dotted key a params file names. Nothing writes the old labels.
"""

from __future__ import annotations

from typing import Any

TRAINED = "trained"
LEGACY_TRAINED = "aam"  # the label releases before this one wrote; read, never written
_LEGACY_PREFIX = LEGACY_TRAINED + "_"


def _current(key: str) -> str:
    if key == LEGACY_TRAINED:
        return TRAINED
    if key.startswith(_LEGACY_PREFIX):
        return TRAINED + "_" + key[len(_LEGACY_PREFIX) :]
    return key


def current_key(dotted: str) -> str:
    """``dotted`` (e.g. ``bias.aam.gap``) with the old label of the trained method replaced
    (``bias.trained.gap``); a current key is returned as it is."""
    return ".".join(_current(part) for part in dotted.split("."))


def current_keys(tree: Any) -> Any:
    """A copy of a metrics tree with every old label of the trained method (a key ``aam`` or
    ``aam_<rest>``, at any depth) under its current name. Where a tree carries both, the current
    key wins and the old one is dropped; a tree with current keys only comes back equal."""
    if isinstance(tree, list):
        return [current_keys(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    out = {key: current_keys(value) for key, value in tree.items() if _current(key) == key}
    for key, value in tree.items():
        new = _current(key)
        if new != key and new not in out:
            out[new] = current_keys(value)
    return out
