"""The storage interface every backend implements, and the local-directory backend.

Paths given to a backend are relative to its root and use "/" separators. Writes are atomic:
locally a temporary file is renamed into place; on S3 a PUT replaces an object as a whole.
Below ``backends`` (which picks a backend for a uri) and ``s3`` (the S3 backend), so neither
imports the other's module for the types they share.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

from latentanon._files import write_bytes_atomic
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
        try:
            write_bytes_atomic(path, data)
        except OSError as exc:
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
