"""routecast: learn which LLM should answer each query, and when to escalate, from logged outcomes.

The top-level import is deliberately light (no torch, no pandas): ``routecast.load`` and the CLI
import heavy modules only when they are used, so routing and ``routecast --help`` start fast, and
the base install (``pip install routecast``, no training stack) can serve checkpoints.

``routecast.load(dir)`` and its Hugging Face-style alias ``routecast.from_pretrained(dir)`` return
the serving runtime; ``router.save_pretrained(dir)`` writes the checkpoint they read and
``Router.from_pretrained(dir)`` gives the router back.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load", "from_pretrained"]


def load(path, **kwargs):
    """Verify (sha256 of every file) and load an exported checkpoint for serving (see :mod:`routecast.serving.runtime`)."""
    from routecast.serving.runtime import load as _load

    return _load(path, **kwargs)


def from_pretrained(path, **kwargs):
    """The same as :func:`load`: the runtime of a checkpoint folder written by ``router.save_pretrained``.

    ``kwargs``: ``expect_sha256`` (the manifest's sha256 you trust) or ``trusted_key`` (an ed25519
    public key file) to authenticate the folder, not only check its integrity.
    """
    return load(path, **kwargs)
