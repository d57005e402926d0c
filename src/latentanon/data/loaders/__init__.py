"""One loader per dataset layout, one module each; each turns the real directory structure and
annotation files into a manifest table (columns in docs/internals.md, layouts in docs/datasets.md).

Annotation problems (a malformed line, an unknown class, a path leaving the dataset root) raise
DataError naming the file and line. A video that is missing or cannot be decoded does not stop
the loader: its row gets frames = -1 and the reason in the `error` column, so the validate stage
can quarantine it with that reason.
"""

from latentanon.data.loaders.common import (
    BASE_COLUMNS,
    INT_COLUMNS,
    SET_COLUMNS,
    manifest_columns,
    probe_file,
)
from latentanon.data.loaders.sets import LOADERS, build_manifests, load_set, manifest_hash

__all__ = [
    "BASE_COLUMNS",
    "INT_COLUMNS",
    "LOADERS",
    "SET_COLUMNS",
    "build_manifests",
    "load_set",
    "manifest_columns",
    "manifest_hash",
    "probe_file",
]
