"""Where store files live: a local directory or an s3:// prefix, behind one small interface
(``latentanon.features.storage``); this module picks the backend for a uri."""

from __future__ import annotations

import os

from latentanon.errors import StoreError
from latentanon.features.storage import LocalBackend, ObjectNotFound, StorageBackend

__all__ = ["LocalBackend", "ObjectNotFound", "StorageBackend", "copy_tree", "open_backend"]


def open_backend(uri: str | os.PathLike) -> StorageBackend:
    """The backend for a local directory (plain path or file://) or an s3://bucket/prefix uri."""
    text = os.fspath(uri)
    if not text:
        raise StoreError("empty store location: give a directory or an s3://bucket/prefix uri")
    if text.startswith("s3://"):
        from latentanon.features.s3 import S3Backend

        return S3Backend(text)
    if text.startswith("file://"):
        return LocalBackend(text[len("file://") :])
    if "://" in text:
        raise StoreError(f"{text}: unsupported store location (use a local path or s3://bucket/prefix)")
    return LocalBackend(text)


def copy_tree(src_uri: str | os.PathLike, dst_uri: str | os.PathLike) -> int:
    """Copy every file under one location to another (local <-> s3:// in any direction).

    For models and reports that should sit next to a feature store in a bucket. Each file is
    written atomically; returns the number of files copied.
    """
    src, dst = open_backend(src_uri), open_backend(dst_uri)
    if not src.root_exists():
        raise StoreError(f"{src.uri}: nothing to copy (location missing or empty)")
    files = src.list_files()
    for rel in files:
        dst.write_bytes(rel, src.read_bytes(rel))
    return len(files)
