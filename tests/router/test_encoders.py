"""Encoders: spec parsing, shapes/dtypes/normalisation, truncation, static distillation, ONNX fidelity."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from routecast.errors import CheckpointError, ConfigError
from routecast.router.encoders import encoder_from_state, get_encoder, parse_spec
from tests._support.paths import shared_dataset


def real_prompts(n: int, seed: int = 0) -> list[str]:
    import pandas as pd

    path = shared_dataset("llmrouter_9models")
    frame = pd.read_parquet(path, columns=["prompt_id", "prompt"]).drop_duplicates("prompt_id")
    return frame.sample(n, random_state=seed)["prompt"].astype(str).tolist()

MB_PROMPT = "lorem ipsum dolor sit amet " * 40_000  # ~1 MB


def _check_unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


# -- spec parsing -----------------------------------------------------------------------------------
def test_parse_spec_paths_and_options():
    assert parse_spec("st:/models/m,max_chars=500") == ("st", "/models/m", {"max_chars": "500"})
    assert parse_spec("static") == ("static", None, {})
    assert parse_spec("static:dim=128") == ("static", None, {"dim": "128"})
    assert parse_spec("onnx:quantize=int8,max_chars=100") == ("onnx", None, {"quantize": "int8", "max_chars": "100"})
    assert parse_spec("hashing:dim=64") == ("hashing", None, {"dim": "64"})


@pytest.mark.parametrize("spec, fragment", [
    ("nope", "unknown encoder"),
    ("hashing:dim=abc", "must be an integer"),
    ("hashing:size=3", "unknown option"),
    ("minilm:dim=3", "unknown option"),
    ("st", "st needs a folder"),
    ("st:/definitely/not/here", "does not exist"),
    ("hashing:dim=4", "dim >= 8"),
    ("", "non-empty"),
])
def test_bad_specs_raise_config_error(spec, fragment):
    with pytest.raises(ConfigError, match=fragment):
        get_encoder(spec)


# -- hashing ----------------------------------------------------------------------------------------
def test_hashing_shapes_normalisation_and_determinism():
    enc = get_encoder("hashing:dim=64")
    texts = ["What is 2+2?", "Write a haiku about autumn.", ""]
    a = enc.encode(texts)
    assert a.shape == (3, 64) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, get_encoder(enc.spec).encode(texts))
    assert enc.cacheable is False
    assert enc.encode([]).shape == (0, 64)


def test_hashing_max_chars_in_spec_and_name():
    enc = get_encoder("hashing:dim=64,max_chars=10")
    assert enc.max_chars == 10 and "max_chars=10" in enc.spec and enc.name != get_encoder("hashing:dim=64").name
    np.testing.assert_array_equal(enc.encode(["0123456789abcdef"]), enc.encode(["0123456789"]))


def test_hashing_truncates_a_1mb_prompt_quickly():
    enc = get_encoder("hashing:dim=256")
    start = time.perf_counter()
    big = enc.encode([MB_PROMPT])
    assert time.perf_counter() - start < 5.0  # generous: an uncut 1 MB prompt takes far longer in char n-grams
    np.testing.assert_array_equal(big, enc.encode([MB_PROMPT[: enc.max_chars]]))


# -- MiniLM via sentence-transformers ---------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    return get_encoder("minilm")


@pytest.fixture(scope="module")
def prompts():
    return real_prompts(50)


@pytest.mark.minilm
def test_minilm_shapes_name_and_truncation(minilm, prompts):
    vectors = minilm.encode(prompts[:20])
    _check_unit_rows(vectors, 20, 384)
    assert minilm.spec == "minilm" and minilm.max_chars == 2000 and minilm.max_seq_length == 256
    assert minilm.name == get_encoder("minilm").name  # stable fingerprint
    assert get_encoder("minilm:max_chars=500").name != minilm.name
    assert get_encoder(f"st:{minilm.folder}").name == minilm.name  # same weights, same cache key
    start = time.perf_counter()
    big = minilm.encode([MB_PROMPT])
    assert time.perf_counter() - start < 10.0
    np.testing.assert_allclose(big, minilm.encode([MB_PROMPT[:2000]]), atol=1e-6)
    # related prompts are closer than unrelated ones
    a, b, c = minilm.encode(["How do I bake bread?", "Recipe for baking a loaf of bread", "Integrate x^2 dx"])
    assert a @ b > a @ c + 0.2


@pytest.mark.minilm
def test_st_spec_with_options(minilm):
    enc = get_encoder(f"st:{minilm.folder},max_chars=100")
    assert enc.max_chars == 100 and enc.dim == 384
    assert get_encoder(enc.spec).name == enc.name


# -- ONNX -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.mark.minilm
def test_onnx_matches_torch_minilm(minilm, prompts, onnx_cache):
    from routecast.router.encoders.onnx_encoder import OnnxEncoder

    ref = minilm.encode(prompts)
    float_enc = OnnxEncoder(cache_dir=onnx_cache)
    int8_enc = OnnxEncoder(quantize="int8", cache_dir=onnx_cache)
    got = float_enc.encode(prompts)
    _check_unit_rows(got, 50, 384)
    cos_float = np.sum(got * ref, axis=1)
    cos_int8 = np.sum(int8_enc.encode(prompts) * ref, axis=1)
    print(f"onnx float cosine vs torch: mean {cos_float.mean():.6f} min {cos_float.min():.6f}; "
          f"int8: mean {cos_int8.mean():.4f} min {cos_int8.min():.4f}")
    assert cos_float.min() > 0.9999
    assert cos_int8.mean() > 0.98 and cos_int8.min() > 0.95
    assert (onnx_cache / "model.onnx").is_file() and (onnx_cache / "model.int8pc.onnx").is_file()
    assert float_enc.name != int8_enc.name and float_enc.spec == "onnx" and int8_enc.spec == "onnx:quantize=int8"
    np.testing.assert_allclose(float_enc.encode([MB_PROMPT]), float_enc.encode([MB_PROMPT[:2000]]), atol=1e-6)


def test_onnx_rejects_unknown_quantisation():
    with pytest.raises(ConfigError, match="quantize"):
        get_encoder("onnx:quantize=int4")


# -- static -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def static_dir(tmp_path_factory, prompts):
    """A static encoder distilled only for the tokens of the test prompts (seconds, not a minute)."""
    from tokenizers import Tokenizer

    from routecast.router.encoders.sentence_transformer import bundled_minilm_path
    from routecast.router.encoders.static import distill_static

    tok = Tokenizer.from_file(str(bundled_minilm_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    ids = sorted({i for e in tok.encode_batch(prompts + ["How do I bake bread?", "Recipe for baking a loaf of bread",
                                                        "Integrate x^2 dx", "lorem ipsum dolor sit amet"],
                                              add_special_tokens=False) for i in e.ids})
    out = tmp_path_factory.mktemp("static") / "enc"
    return distill_static(None, out, dim=64, token_ids=ids, progress=False)


@pytest.mark.minilm
def test_static_distils_and_encodes(static_dir, prompts, minilm):
    config = json.loads((static_dir / "config.json").read_text())
    assert config["dim"] == 64 and config["vocab_size"] == 30522 and config["n_distilled"] > 500
    assert sorted(p.name for p in static_dir.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    enc = get_encoder(f"static:{static_dir}")
    vectors = enc.encode(prompts)
    _check_unit_rows(vectors, 50, 64)
    # empty text and text made only of tokens that were not distilled still give unit vectors
    _check_unit_rows(enc.encode(["", "ℵℶℷ"]), 2, 64)
    a, b, c = enc.encode(["How do I bake bread?", "Recipe for baking a loaf of bread", "Integrate x^2 dx"])
    assert a @ b > a @ c
    # the static space keeps MiniLM's similarity structure: pairwise cosines correlate
    ref = minilm.encode(prompts)
    iu = np.triu_indices(len(prompts), 1)
    corr = np.corrcoef((vectors @ vectors.T)[iu], (ref @ ref.T)[iu])[0, 1]
    print(f"static(64d, test vocab) vs MiniLM pairwise-similarity correlation: {corr:.3f}")
    assert corr > 0.4  # measured 0.525; benchmarks/encoders.py: full static 0.41, hashing 0.30
    np.testing.assert_array_equal(enc.encode([MB_PROMPT]), enc.encode([MB_PROMPT[:2000]]))


@pytest.mark.minilm
def test_static_small_and_large_batches_give_the_naive_sum(static_dir, prompts, monkeypatch):
    """One prompt at a time, and a batch summed in blocks of one text each (the block bound at 0):
    both are the plain normalised sum of the distilled vectors of the known tokens."""
    from routecast.router.encoders import static

    enc = get_encoder(f"static:{static_dir}")
    texts = list(prompts) + ["", "ℵℶℷ"]

    def naive(text):
        ids = [i for i in enc.token_ids(enc.truncate([text]))[0] if enc._known[i]]
        v = enc._vectors[ids].sum(axis=0) if ids else enc._empty
        return v / np.linalg.norm(v)

    reference = np.stack([naive(t) for t in texts])
    one_by_one = np.concatenate([enc.encode([t]) for t in texts])
    monkeypatch.setattr(static, "_GATHER_MAX_TOKENS", 0)  # every block holds one text: the block bookkeeping
    batched = enc.encode(texts)
    np.testing.assert_allclose(one_by_one, reference, atol=1e-5)
    np.testing.assert_allclose(batched, reference, atol=1e-5)


@pytest.mark.minilm
def test_static_state_roundtrip(static_dir, prompts):
    enc = get_encoder(f"static:{static_dir}")
    arrays = enc.state_arrays()
    assert set(arrays) == {"embeddings", "empty", "tokenizer_json"}
    assert arrays["embeddings"].dtype == np.float16 and arrays["tokenizer_json"].dtype == np.uint8
    rebuilt = encoder_from_state(enc.spec, arrays, enc.state_config())
    assert rebuilt.name == enc.name and rebuilt.spec == enc.spec
    np.testing.assert_array_equal(rebuilt.encode(prompts[:10]), enc.encode(prompts[:10]))
    with pytest.raises(CheckpointError):
        type(enc).from_state(enc.state_config(), {"embeddings": arrays["embeddings"]})


@pytest.mark.minilm
def test_static_rejects_corrupt_folder(static_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(static_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        get_encoder(f"static:{broken}")
    (broken / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="lacks model.safetensors"):
        get_encoder(f"static:{broken}")


@pytest.mark.minilm
def test_default_static_loads_from_cache_dir_without_distilling(static_dir, monkeypatch, tmp_path):
    import shutil

    from routecast.router.encoders import static

    monkeypatch.setenv("ROUTECAST_CACHE_DIR", str(tmp_path))
    target = static.default_static_dir()
    assert str(target).startswith(str(tmp_path))
    shutil.copytree(static_dir, target)

    def _no_distil(*args, **kwargs):
        raise AssertionError("must not distil when the cached encoder exists")

    monkeypatch.setattr(static, "distill_static", _no_distil)
    enc = get_encoder("static")
    assert enc.spec == "static" and enc.dim == 64
