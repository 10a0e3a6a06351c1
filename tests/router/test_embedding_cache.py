"""On-disk embedding cache: hits, dedupe, persistence across processes, corruption, concurrency."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from routecast.errors import DataError
from routecast.router.embedding_cache import EmbeddingCache, default_cache_dir, embed
from routecast.router.encoders import get_encoder
from tests._support.encoders import CountingEncoder
from tests._support.paths import REPO

#: subprocess prelude (the subprocess runs with cwd=REPO, so ``tests`` is importable)
IMPORT_COUNTING = "from tests._support.encoders import CountingEncoder\n"


def _texts(n: int, prefix: str = "prompt") -> list[str]:
    return [f"{prefix} number {i}: what is {i} + {i * 7}?" for i in range(n)]


def test_second_call_encodes_nothing_and_returns_identical_vectors(tmp_path):
    enc = CountingEncoder()
    texts = _texts(50) + _texts(10)  # 10 duplicates inside one call
    first = embed(enc, texts, cache_dir=tmp_path)
    assert first.shape == (60, 32) and first.dtype == np.float32
    assert len(enc.encoded) == 50 and sorted(enc.encoded) == sorted(set(texts))
    np.testing.assert_array_equal(first, enc.inner.encode(texts))
    enc.calls, enc.encoded = 0, []
    second = embed(enc, list(reversed(texts)), cache_dir=tmp_path)
    assert enc.calls == 0
    np.testing.assert_array_equal(second, first[::-1])


def test_only_missing_texts_are_encoded(tmp_path):
    enc = CountingEncoder()
    embed(enc, _texts(20), cache_dir=tmp_path)
    enc.encoded = []
    out = embed(enc, _texts(20) + _texts(5, "new"), cache_dir=tmp_path)
    assert sorted(enc.encoded) == sorted(_texts(5, "new"))
    np.testing.assert_array_equal(out[20:], enc.inner.encode(_texts(5, "new")))


def test_cache_survives_a_new_process(tmp_path):
    enc = CountingEncoder()
    expected = embed(enc, _texts(30), cache_dir=tmp_path)
    script = IMPORT_COUNTING + textwrap.dedent(f'''
        import numpy as np
        from routecast.router.embedding_cache import embed
        enc = CountingEncoder()
        out = embed(enc, {_texts(30)!r}, cache_dir={str(tmp_path)!r})
        np.save({str(tmp_path / "out.npy")!r}, out)
        print("CALLS", enc.calls)
    ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "CALLS 0" in result.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_concurrent_processes_write_separate_shards(tmp_path):
    script = IMPORT_COUNTING + textwrap.dedent('''
        import sys
        from routecast.router.embedding_cache import embed
        texts = [f"shared prompt {i}" for i in range(200)] + [f"own {sys.argv[1]} {i}" for i in range(100)]
        embed(CountingEncoder(), texts, cache_dir=sys.argv[2])
    ''')
    procs = [subprocess.Popen([sys.executable, "-c", script, str(k), str(tmp_path)], cwd=REPO) for k in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    enc = CountingEncoder()
    cache = EmbeddingCache(enc, tmp_path)
    assert len(cache.shard_paths()) == 2
    texts = [f"shared prompt {i}" for i in range(200)] + [f"own {k} {i}" for k in range(2) for i in range(100)]
    out = cache.embed(texts)
    assert enc.calls == 0
    np.testing.assert_array_equal(out, enc.inner.encode(texts))


def test_corrupted_shard_is_skipped_with_a_warning(tmp_path):
    enc = CountingEncoder()
    embed(enc, _texts(10), cache_dir=tmp_path)
    cache = EmbeddingCache(enc, tmp_path)
    (shard,) = cache.shard_paths()
    shard.write_bytes(b"PK\x03\x04 this is not a zip file")
    enc = CountingEncoder()  # as in a new process: an encoder object keeps its open cache (open_cache)
    with pytest.warns(RuntimeWarning, match="unreadable shard"):
        out = embed(enc, _texts(10), cache_dir=tmp_path)
    assert len(enc.encoded) == 10  # re-encoded, not crashed
    np.testing.assert_array_equal(out, enc.inner.encode(_texts(10)))


def test_shard_with_wrong_dimension_is_skipped(tmp_path):
    enc = CountingEncoder()
    cache = EmbeddingCache(enc, tmp_path)
    cache.directory.mkdir(parents=True)
    np.savez(cache.directory / "shard-0-0-bad.npz", keys=np.array([b"a" * 64], dtype="S64"),
             vectors=np.zeros((1, 5), dtype=np.float32))
    with pytest.warns(RuntimeWarning, match="inconsistent shard"):
        out = embed(enc, ["x"], cache_dir=tmp_path)
    assert out.shape == (1, 32) and enc.calls == 1


def test_compact_merges_shards_and_keeps_vectors(tmp_path):
    enc = CountingEncoder()
    for k in range(3):
        embed(enc, _texts(10, f"batch{k}"), cache_dir=tmp_path)
    cache = EmbeddingCache(enc, tmp_path)
    assert len(cache.shard_paths()) == 3
    assert cache.compact() == 3
    assert len(cache.shard_paths()) == 1
    enc.calls = 0
    texts = [t for k in range(3) for t in _texts(10, f"batch{k}")]
    np.testing.assert_array_equal(embed(enc, texts, cache_dir=tmp_path), enc.inner.encode(texts))
    assert enc.calls == 0


def test_many_small_writes_are_compacted_automatically(tmp_path):
    enc = CountingEncoder()
    cache = EmbeddingCache(enc, tmp_path, compact_after=4)
    for i in range(6):
        cache.embed([f"one prompt at a time {i}"])
    assert 1 <= len(cache.shard_paths()) <= 4
    enc.calls = 0
    texts = [f"one prompt at a time {i}" for i in range(6)]
    np.testing.assert_array_equal(EmbeddingCache(enc, tmp_path).embed(texts), enc.inner.encode(texts))
    assert enc.calls == 0


def test_cache_dir_false_and_uncacheable_encoders_skip_the_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTECAST_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root"
    enc = CountingEncoder()
    out = embed(enc, ["a", "b", "a"], cache_dir=False)
    assert enc.encoded == ["a", "b"]  # still deduplicated
    np.testing.assert_array_equal(out[0], out[2])
    hashing = get_encoder("hashing:dim=16")
    np.testing.assert_array_equal(embed(hashing, ["a", "b"]), hashing.encode(["a", "b"]))
    assert not (tmp_path / "root").exists()
    embed(enc, ["c"])  # default location for a cacheable encoder
    assert list((tmp_path / "root" / "embeddings").glob("*/shard-*.npz"))


def test_empty_input_and_bad_text():
    enc = CountingEncoder()
    assert embed(enc, [], cache_dir=False).shape == (0, 32)
    with pytest.raises(DataError, match="prompt 2 is NoneType"):
        embed(enc, ["ok", None], cache_dir=False)


def test_progress_bar_and_flush_in_chunks(tmp_path, capsys):
    enc = CountingEncoder()
    cache = EmbeddingCache(enc, tmp_path)
    out = cache.embed(_texts(300), show_progress=True, batch_size=50, flush_every=100)
    assert out.shape == (300, 32)
    assert len(cache.shard_paths()) == 3  # a crash mid-way would have kept the flushed shards
    assert "embedding (counting)" in capsys.readouterr().err


def test_an_encoder_opens_its_cache_once_and_hits_touch_no_disk(tmp_path, monkeypatch):
    from routecast.router.embedding_cache import open_cache

    enc = CountingEncoder()
    first = embed(enc, _texts(10), cache_dir=tmp_path)
    assert open_cache(enc, tmp_path) is open_cache(enc, tmp_path)
    assert open_cache(CountingEncoder(), tmp_path) is not open_cache(enc, tmp_path)

    def no_disk(self):
        raise AssertionError("a cached prompt must not touch the disk")

    monkeypatch.setattr(EmbeddingCache, "refresh", no_disk)
    np.testing.assert_array_equal(embed(enc, _texts(10)[3:5], cache_dir=tmp_path), first[3:5])
    assert len(enc.encoded) == 10
