"""Who appears in the synthetic benchmark: identities per split, balanced in gender and skin
tone, and a separate pool for pretraining."""

from __future__ import annotations

import numpy as np

from latentanon.data import layouts
from latentanon.data.actors import ATTRIBUTES, Identity, make_identity
from latentanon.data.config import DataConfig

SPLITS = ("train", "val", "test")
PRETRAIN_IDENTITY_BASE = 1000  # pretraining identities never meet the other sets' identities


def _balanced_people(ids: list[int], rng: np.random.Generator) -> list[Identity]:
    """Identities whose (gender, skin tone) combinations are as balanced as the count allows."""
    combos = [(g, s) for g in range(len(ATTRIBUTES["gender"])) for s in range(len(ATTRIBUTES["skin_tone"]))]
    order = rng.permutation(len(combos))
    people = []
    for k, identity in enumerate(ids):
        if k % len(combos) == 0 and k:
            order = rng.permutation(len(combos))
        gender, skin = combos[order[k % len(combos)]]
        people.append(make_identity(identity, skin, gender, rng))
    return people


def make_cast(cfg: DataConfig) -> dict[str, list[Identity]]:
    """Identities per split (ids 1..N: train, then val, then test) and the pretraining pool."""
    rng = np.random.default_rng([cfg.seed, 7])
    counts = {"train": cfg.n_identities_train, "val": cfg.n_identities_val, "test": cfg.n_identities_test}
    cast, start = {}, 1
    for split in SPLITS:
        cast[split] = _balanced_people(list(range(start, start + counts[split])), rng)
        start += counts[split]
    n_pre = cfg.n_identities_pretrain
    n_pre_val = max(1, round(n_pre * layouts.val_fraction(cfg.n_identities_train, cfg.n_identities_val)))
    pre_ids = list(range(PRETRAIN_IDENTITY_BASE + 1, PRETRAIN_IDENTITY_BASE + n_pre + 1))
    people = _balanced_people(pre_ids, rng)
    cast["pretrain_train"], cast["pretrain_val"] = people[: n_pre - n_pre_val], people[n_pre - n_pre_val :]
    return cast


def _labelled_people(cast):
    for split in SPLITS:
        for person in cast[split]:
            yield split, person
