"""Fast guards of the lean runtime install (the slow, real one is test_runtime_venv.py).

A fresh interpreter with every module of the ``train`` extra blocked (``sys.modules[name] = None``
makes ``import name`` raise ModuleNotFoundError, as on ``pip install routecast``) must still import
the serving path, and training entry points must fail with one line naming the extra.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from routecast.errors import TRAIN_EXTRA_MODULES, MissingExtraError, missing_extra
from tests._support.encoders import toy_static_encoder
from tests._support.paths import REPO

BLOCK = "import sys\nfor _m in {mods!r}:\n    sys.modules[_m] = None\n".format(mods=sorted(TRAIN_EXTRA_MODULES))
SERVING_MODULES = ["routecast.cli", "routecast.serving.app", "routecast.serving.runtime", "routecast.serving.batch",
                   "routecast.core.checkpoint", "routecast.router.checkpoint_state", "routecast.router.encoders.static", "routecast.router.knn",
                   "routecast.router.linear", "routecast.router.encoders.onnx_encoder", "routecast.router.mlp",
                   "routecast.router.mf", "routecast.router.irt", "routecast.router.sw_ranking"]


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code, *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_serving_path_imports_without_the_training_extra():
    done = _python("import importlib, json\n"
                   f"for name in {SERVING_MODULES!r}:\n"
                   "    importlib.import_module(name)\n"
                   "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules if sys.modules[m] is not None})))\n")
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert loaded & TRAIN_EXTRA_MODULES == set()


def test_training_command_without_the_extra_is_one_line_exit_2(tmp_path):
    done = _python("from routecast.cli import main\n"
                   "main(['train', '--data', 'llmrouter_9models', '--router', 'linear', '--out', sys.argv[1], "
                   "'--no-track'])\n", str(tmp_path / "run"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    line, = done.stderr.strip().splitlines()
    assert line.startswith("error: routecast train needs the training extra (")
    assert line.endswith("is not installed): pip install 'routecast[train]'")


def test_torch_router_without_the_extra_names_the_router_and_the_extra():
    """finetuned-encoder (a transformer) is train-only; mlp/mf/irt load and route through head.onnx
    (tests/install/test_lean_checkpoints.py)."""
    done = _python("from routecast.errors import MissingExtraError\n"
                   "from routecast.core.registry import make_router\n"
                   "try:\n"
                   "    make_router('finetuned-encoder')\n"
                   "except MissingExtraError as exc:\n"
                   "    print(exc)\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ("router 'finetuned-encoder' needs the training extra (torch is not installed): "
                                   "pip install 'routecast[train]'")


def test_missing_extra_maps_only_train_extra_modules():
    error = missing_extra(ModuleNotFoundError("No module named 'sklearn.linear_model'", name="sklearn.linear_model"),
                          "routecast evaluate")
    assert isinstance(error, MissingExtraError) and isinstance(error, ImportError)
    assert str(error) == ("routecast evaluate needs the training extra (sklearn is not installed): "
                          "pip install 'routecast[train]'")
    assert missing_extra(ModuleNotFoundError("No module named 'numpy'", name="numpy"), "x") is None
    assert missing_extra(ValueError("torch"), "x") is None


@pytest.mark.parametrize("bound", [0, 1, 5, 17, 10_000])
def test_static_block_sum_equals_the_naive_sum(bound, monkeypatch):
    """The static encoder's numpy-only summing (no scipy at run time), for any block bound."""
    from routecast.router.encoders import static

    rng = np.random.default_rng(bound)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    counts = rng.integers(0, 9, size=23)
    counts[[0, 7, 22]] = 0  # empty texts at the start, the middle and the end
    flat = rng.integers(0, 50, size=int(counts.sum()))
    monkeypatch.setattr(static, "_GATHER_MAX_TOKENS", bound)
    sums = static._sum_by_text(vectors, flat, counts)
    start = 0
    for i, n in enumerate(counts):
        if n:
            np.testing.assert_allclose(sums[i], vectors[flat[start:start + n]].sum(axis=0), rtol=1e-5, atol=1e-5)
        start += n


def test_static_encoder_checkpoint_routes_without_the_training_extra(tmp_path):
    """Save in this (full) process, load and route where every train-extra module is blocked."""
    from routecast.core.registry import make_router
    from tests._support.serving import prompts_of, synthetic_log

    log = synthetic_log()
    encoder = toy_static_encoder(list(log.prompts) + prompts_of("math", 4, seed=5) + prompts_of("chat", 4, seed=6))
    router = make_router("knn", k=5)
    router.encoder_ = encoder
    router.fit(log, embeddings=encoder.encode(list(log.prompts)))
    ckpt = router.save_pretrained(tmp_path / "knn-static")
    prompts = prompts_of("math", 4, seed=5) + prompts_of("chat", 4, seed=6)
    expected = router.route(prompts, lam=30.0).records()
    assert [r["model"] for r in expected] == ["large"] * 4 + ["small"] * 4
    done = _python("import json, routecast\n"
                   "records = routecast.from_pretrained(sys.argv[1]).route(json.loads(sys.argv[2]), lam=30.0)\n"
                   "print(json.dumps(records))\n", str(ckpt), json.dumps(prompts))
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(r["model"], r["rank"], r["ranking"]) for r in got] == [(r["model"], r["rank"], r["ranking"]) for r in expected]
