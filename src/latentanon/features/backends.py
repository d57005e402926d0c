"""Where store files live: a local directory or an s3:// prefix, behind one small interface.

Paths given to a backend are relative to its root and use "/" separators. Writes are atomic:
locally a temporary file is renamed into place; on S3 a PUT replaces an object as a whole.
"""
from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from latentanon.errors import StoreError


class ObjectNotFound(StoreError):
    """A file (local) or object (S3) that the store expected is not there."""


class StorageBackend(ABC):
    """Interface of a store root; subclasses implement it for one kind of storage."""

    uri: str

    def location(self, rel: str) -> str:
        """The full uri of a relative path, for messages."""
        return f"{self.uri.rstrip('/')}/{rel}" if rel else self.uri

    @abstractmethod
    def root_exists(self) -> bool:
        """Whether anything is stored under the root."""

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes:
        """The content of a file; ObjectNotFound when it is absent."""

    @abstractmethod
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Replace a file's content atomically."""

    @abstractmethod
    def exists(self, rel: str) -> bool:
        """Whether a file is present."""

    @abstractmethod
    def delete(self, rel: str) -> None:
        """Remove a file; absent files are fine."""

    @abstractmethod
    def list_files(self, under: str = "") -> list[str]:
        """Every file below a relative folder, as sorted root-relative paths."""


class LocalBackend(StorageBackend):
    """A directory on a local (or mounted) file system."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def _path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def root_exists(self) -> bool:
        return self.root.is_dir()

    def read_bytes(self, rel: str) -> bytes:
        path = self._path(rel)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{path}: file not found") from exc
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc}") from exc

    def write_bytes(self, rel: str, data: bytes) -> None:
        path = self._path(rel)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root}: store location exists and is not a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        # A hidden, uniquely named temporary file in the same directory, renamed into place:
        # readers never see a half-written file and concurrent writers never share one.
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"{path}: cannot write: {exc}") from exc

    def exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def delete(self, rel: str) -> None:
        self._path(rel).unlink(missing_ok=True)

    def list_files(self, under: str = "") -> list[str]:
        base = self._path(under)
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            rel = path.relative_to(self.root)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                found.append(rel.as_posix())
        return sorted(found)


def open_backend(uri: str | os.PathLike) -> StorageBackend:
    """The backend for a local directory (plain path or file://) or an s3://bucket/prefix uri."""
    text = os.fspath(uri)
    if not text:
        raise StoreError("empty store location: give a directory or an s3://bucket/prefix uri")
    if text.startswith("s3://"):
        from latentanon.features.s3 import S3Backend

        return S3Backend(text)
    if text.startswith("file://"):
        return LocalBackend(text[len("file://"):])
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
