"""A loaded mlp checkpoint routes through its head.onnx even with torch installed.

Why: a single-prompt torch forward of the head costs ~0.1 ms on one thread and ~20 ms when torch's
OpenMP threads contend on a busy machine; onnxruntime runs the same graph in ~15 us. The graph
must give the torch network's logits (max abs difference <= 1e-5) and the same decisions; a
router refitted after loading must stop using the graph of the network it no longer has.
"""

from __future__ import annotations

import numpy as np
import pytest

import routecast
from routecast.core.checkpoint import save_checkpoint
from routecast.core.policy import decide, lam_grid
from routecast.core.registry import make_router

pytestmark = pytest.mark.slow  # trains a small torch model

HASHING = "hashing:dim=256"
FAST = {"max_epochs": 5, "hidden_dim": 64}


def _torch_quality(router, X):
    from routecast.router.quality_net import predict_logits

    return np.clip(1.0 / (1.0 + np.exp(-predict_logits(router.net_, X))), 0.0, 1.0)


@pytest.fixture(scope="module")
def fitted(small_split, tmp_path_factory):
    from routecast.router.embedding_cache import embed
    from routecast.router.encoders import get_encoder

    train, test = small_split
    encoder = get_encoder(HASHING)
    X_train, X_test = embed(encoder, list(train.prompts)), embed(encoder, list(test.prompts))
    router = make_router("mlp", encoder=HASHING, **FAST).fit(train, X_train)
    path = save_checkpoint(router, tmp_path_factory.mktemp("mlp") / "ckpt")
    return router, path, train, X_train, X_test, list(test.prompts)


def test_loaded_checkpoint_routes_through_onnx_with_torch_installed(fitted, monkeypatch):
    router, path, _, _, X_test, prompts = fitted
    runtime = routecast.load(path)
    loaded = runtime.router
    assert loaded.net_ is not None and loaded._head_session is not None and loaded._head_net is loaded.net_
    onnx_quality = loaded.predict_quality(embeddings=X_test)
    torch_quality = _torch_quality(router, X_test)
    assert np.abs(onnx_quality - torch_quality).max() <= 1e-5
    costs = np.asarray(router.costs_, dtype=np.float64)
    for lam in lam_grid(costs, n_points=41):
        assert np.array_equal(decide(onnx_quality, costs, float(lam)), decide(torch_quality, costs, float(lam)))

    # the torch forward is not called on the routing path any more
    import routecast.router.quality_net as quality_net

    expected = list(np.asarray(router.models_)[router.route(prompts[:3], lam=50.0).choice])  # in memory: torch

    def no_torch(*args, **kwargs):
        raise AssertionError("routed through torch")

    monkeypatch.setattr(quality_net, "predict_logits", no_torch)
    records = runtime.route(prompts[:3], lam=50.0)
    assert [r["model"] for r in records] == expected
    single = [runtime.route([p], lam=50.0)[0]["model"] for p in prompts[:3]]
    assert single == [r["model"] for r in records]


def test_refit_after_load_routes_with_the_new_network(fitted):
    _, path, train, X_train, X_test, _ = fitted
    loaded = routecast.load(path).router
    old_net = loaded.net_
    loaded.set_params(seed=1).fit(train, X_train)
    assert loaded.net_ is not old_net and loaded._head_session is not None  # the old graph is still held...
    # ...but not used: the predictions are the new network's, exactly
    assert np.array_equal(loaded.predict_quality(embeddings=X_test), _torch_quality(loaded, X_test))


def test_re_save_of_a_loaded_router_exports_its_network(fitted, tmp_path):
    router, path, _, _, X_test, _ = fitted
    loaded = routecast.load(path).router
    again = routecast.load(save_checkpoint(loaded, tmp_path / "again")).router
    assert np.abs(again.predict_quality(embeddings=X_test) - _torch_quality(router, X_test)).max() <= 1e-5
