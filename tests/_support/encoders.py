"""Test encoders."""

from __future__ import annotations

from routecast.router.encoders import get_encoder
from routecast.router.encoders.base import Encoder


class CountingEncoder(Encoder):
    """Hashing vectors, but cacheable, and counting every text it is asked to encode (so a test
    can assert what the embedding cache did and did not recompute)."""

    def __init__(self, dim: int = 32):
        self.inner = get_encoder(f"hashing:dim={dim}")
        self.dim, self.max_chars = dim, self.inner.max_chars
        self.spec, self.name = "counting", f"counting-test-dim{dim}"
        self.calls, self.encoded = 0, []

    def encode(self, texts, *, batch_size=64, show_progress=False):
        self.calls += 1
        self.encoded.extend(texts)
        return self.inner.encode(texts)
