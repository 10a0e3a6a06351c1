"""Errors that routecast raises on purpose.

Every failure a user can cause (a bad log, a tampered checkpoint, an impossible budget) surfaces
as a subclass of :class:`RoutecastError` with a message that names what to fix, so the CLI can
print one line instead of a traceback from inside pandas or torch.
"""

from __future__ import annotations


class RoutecastError(Exception):
    """Base class of every error routecast raises deliberately."""


class DataError(RoutecastError, ValueError):
    """Bad input data. Names the file, the 1-based row (as a user counts) and the column.

    ``row`` counts data rows from 1 (the header of a CSV is not a row); ``None`` when the problem
    concerns the whole file or a whole column.
    """

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 column: str | None = None):
        self.path = None if path is None else str(path)
        self.row = row
        self.column = column
        self.reason = message
        where = []
        if self.path is not None:
            where.append(f"file {self.path}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class RoutingError(RoutecastError, ValueError):
    """A routing request that cannot be honoured (no cost for a model, budget below the cheapest model...)."""


class ConfigError(RoutecastError, ValueError):
    """An invalid router/cascade configuration (unknown router, unknown hyperparameter...)."""


class CheckpointError(RoutecastError):
    """A checkpoint that must not be loaded (hash mismatch, unknown format, unregistered class...)."""


class NotFittedError(RoutecastError, AttributeError):
    """A router or cascade used before ``fit``."""
