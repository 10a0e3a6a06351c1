"""routecast: learn which LLM should answer each query, and when to escalate, from logged outcomes.

The top-level import is deliberately light (no torch, no pandas): ``routecast.load`` and the CLI
import heavy modules only when they are used, so routing and ``routecast --help`` start fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(path, **kwargs):
    """Load an exported router checkpoint for serving (see :mod:`routecast.serving.runtime`)."""
    from routecast.serving.runtime import load as _load

    return _load(path, **kwargs)
