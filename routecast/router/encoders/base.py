"""The encoder interface: text in, fixed-size float32 vectors out.

Routers only ever see ``Encoder.encode(texts) -> (n, dim) float32``. ``spec`` is the short string
that rebuilds the encoder (``get_encoder(spec)``) and is what configs, the CLI and checkpoints
record; ``name`` is a stable identity of the exact weights and settings, which keys the
embedding cache (two encoders with the same ``name`` must give the same vectors).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np


class Encoder(ABC):
    #: short spec string that rebuilds this encoder via routecast.router.encoders.get_encoder
    spec: str
    #: identity of weights + settings; keys the embedding cache
    name: str
    #: output dimension
    dim: int
    #: prompts are cut to this many characters before encoding (None: no cut)
    max_chars: int | None = None
    #: False when encoding is cheaper than a disk read (hashing): the embedding cache then skips the disk
    cacheable: bool = True

    @abstractmethod
    def encode(self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32, L2-normalised rows."""

    def truncate(self, texts: Sequence[str]) -> list[str]:
        """Cut every prompt to ``max_chars`` (documented limit: a 1 MB prompt must not stall)."""
        limit = self.max_chars
        return [t if limit is None or len(t) <= limit else t[:limit] for t in texts]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Weights to store inside a checkpoint (empty when the spec alone rebuilds the encoder)."""
        return {}

    def state_config(self) -> dict:
        """JSON-able settings to store next to ``state_arrays()`` (see ``encoders.encoder_from_state``)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, dim={self.dim})"


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
