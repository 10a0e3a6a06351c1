"""A cheap, deterministic bag-of-words encoder for fast tests and as a no-model fallback.

Word unigrams and bigrams plus character 3-5-grams are hashed into ``dim`` buckets (signed, so
collisions cancel on average), TF-weighted with log(1+tf) and L2-normalised. It needs no
weights, embeds thousands of prompts per second, and is good enough to make routers learn
something, which is all a unit test needs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from routecast.errors import ConfigError
from routecast.router.encoders.base import Encoder, l2_normalise


#: prompts are cut to this many characters (char n-grams of a 1 MB prompt would take seconds)
DEFAULT_MAX_CHARS = 4096


class HashingEncoder(Encoder):
    #: cheaper to recompute than to read back from disk, so the embedding cache skips it
    cacheable = False

    def __init__(self, dim: int = 512, max_chars: int | None = DEFAULT_MAX_CHARS):
        if dim < 8:
            raise ConfigError(f"hashing encoder needs dim >= 8, got {dim}")
        self.dim = int(dim)
        self.max_chars = max_chars
        self.spec = f"hashing:dim={self.dim}" + ("" if max_chars == DEFAULT_MAX_CHARS else f",max_chars={max_chars}")
        self.name = f"hashing-v1-dim{self.dim}-max{self.max_chars}"
        self._vectorizer = None

    def _get_vectorizer(self):
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import HashingVectorizer

            self._vectorizer = HashingVectorizer(
                n_features=self.dim, analyzer="char_wb", ngram_range=(3, 5), alternate_sign=True,
                norm=None, lowercase=True, dtype=np.float32)
            self._word = HashingVectorizer(
                n_features=self.dim, analyzer="word", ngram_range=(1, 2), alternate_sign=True,
                norm=None, lowercase=True, dtype=np.float32)
        return self._vectorizer

    def encode(self, texts: Sequence[str], *, batch_size: int = 4096, show_progress: bool = False) -> np.ndarray:
        chars = self._get_vectorizer()
        texts = self.truncate(list(texts))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        counts = chars.transform(texts) + 2.0 * self._word.transform(texts)
        counts.data = np.sign(counts.data) * np.log1p(np.abs(counts.data))
        return l2_normalise(counts.toarray())
