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


def toy_static_encoder(texts, dim: int = 16, seed: int = 0):
    """A real StaticEncoder over a word-level tokenizer of ``texts`` with random vectors: the
    checkpoint path of the default (static) encoder without distilling MiniLM, and with no
    train-extra module at run time (the hashing encoder needs scikit-learn)."""
    import numpy as np
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    from routecast.router.encoders.static import FORMAT, StaticEncoder

    words = sorted({w for t in texts for w in t.replace(":", " ").replace("?", " ").split()})
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(len(vocab), dim)).astype(np.float16)
    embeddings[0] = 0  # [UNK] has no vector
    config = {"format": FORMAT, "dim": dim, "vocab_size": len(vocab)}
    return StaticEncoder(config, embeddings, rng.normal(size=dim).astype(np.float32), tokenizer.to_str())
