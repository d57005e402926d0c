"""Errors a user sees: each names the file (or setting) and the problem.

The command line maps them to exit statuses (documented in the README, "Exit status"):
0 success, 1 an unexpected error (a bug: Python's traceback), 2 a usage error (a bad option or
setting), 3 bad input (data, a store, a model, a missing upstream result), 4 a check that failed
(the data broke an expectation)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_CHECK_FAILED = 4


class LatentanonError(Exception):
    """Base of every error the CLI reports as a clean message instead of a traceback."""

    exit_status = EXIT_BAD_INPUT


class DataError(LatentanonError):
    """Bad input data: a corrupt video, a missing file, an annotation that does not fit."""


class CheckFailed(LatentanonError):
    """A check ran to its end on readable input and the input failed it."""

    exit_status = EXIT_CHECK_FAILED


class ValidationFailed(CheckFailed):
    """The validate stage found data that breaks an expectation."""


class StoreError(LatentanonError):
    """A feature store that is missing, incomplete or fails its checksums."""


class ModelError(LatentanonError):
    """An encoder or adapter that cannot be loaded or used as asked."""
