"""Embedding cache (placeholder: computes without caching; replaced by the on-disk cache)."""
from __future__ import annotations

import numpy as np


def embed(encoder, texts, *, cache_dir=None, show_progress=None) -> np.ndarray:
    return encoder.encode(list(texts))
