"""Names shared by the benchmark writer and the loaders: set folders, sidecar files, split rules.

The real datasets have no identity, clothing or (outside PA-HMDB51 / VISPR) attribute fields; the
synthetic benchmark writes them to documented sidecar files that the loaders read when present
(docs/datasets.md).
"""

from __future__ import annotations

import hashlib

SETS = ("pretrain", "actions", "privacy_videos", "privacy_images", "untrimmed", "anomaly", "bias")
# Folder of each set under the data root, and the dataset whose layout it follows.
SET_DIRS = {name: name for name in SETS}
LAYOUT_OF = {
    "pretrain": "Kinetics-400",
    "actions": "UCF101",
    "privacy_videos": "HMDB51 + PA-HMDB51",
    "privacy_images": "VISPR",
    "untrimmed": "THUMOS14",
    "anomaly": "UCF-Crime",
    "bias": "NTU RGB+D",
}

# The private attributes every privacy record carries (-1 where a dataset does not provide one).
ATTRIBUTE_COLUMNS = ("skin_tone", "gender", "clothing", "face")
# The sets labelled with those attributes: what privacy attackers and label-using methods train on.
PRIVACY_SETS = ("privacy_videos", "privacy_images")
# Files read as one still image (a static clip only) rather than as a video.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})

CLASSES_FILE = "classes.json"
STAMP_FILE = "latentanon_generation.json"
# Per set folder: one row per video, path relative to the set folder.
SIDECAR_FILE = "latentanon_sidecar.csv"
SIDECAR_COLUMNS = ("path", "identity", *ATTRIBUTE_COLUMNS)
# NTU RGB+D: gender per subject, and the cross-subject training subjects (standard list if absent).
SUBJECTS_FILE = "latentanon_subjects.csv"
CROSS_SUBJECT_FILE = "latentanon_cross_subject_train.txt"
# UCF-Crime: temporal annotations of training videos in the test annotation format (optional).
TEMPORAL_TRAIN_FILE = "latentanon_temporal_train.txt"

# The cross-subject training subjects of NTU RGB+D 60 (Shahroudy et al., 2016).
NTU_CROSS_SUBJECT_TRAIN = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)

UNKNOWN = -1


def val_fraction(n_train: int, n_val: int) -> float:
    total = n_train + n_val
    return n_val / total if total else 0.0


def held_out_identities(identities, fraction: float) -> set[int]:
    """Identities of an official training split that become validation.

    The rule: sort the known identities of the training split and hold out the last
    round(fraction * count) of them (at least one when fraction > 0 and there are two or more).
    """
    known = sorted({int(i) for i in identities if int(i) != UNKNOWN})
    if fraction <= 0 or len(known) < 2:
        return set()
    count = min(len(known) - 1, max(1, round(fraction * len(known))))
    return set(known[-count:])


def hashed_to_val(key: str, fraction: float) -> bool:
    """Fallback for videos without an identity: a stable hash of the video id decides."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
