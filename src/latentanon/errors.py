"""Errors a user sees: each names the file (or setting) and the problem."""
from __future__ import annotations


class LatentanonError(Exception):
    """Base of every error the CLI reports as a clean message instead of a traceback."""


class DataError(LatentanonError):
    """Bad input data: a corrupt video, a missing file, an annotation that does not fit."""


class ValidationFailed(LatentanonError):
    """The validate stage found data that breaks an expectation."""


class StoreError(LatentanonError):
    """A feature store that is missing, incomplete or fails its checksums."""


class ModelError(LatentanonError):
    """An encoder or adapter that cannot be loaded or used as asked."""
