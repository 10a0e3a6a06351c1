"""One contract, every registered router (the scikit-learn ``test_common`` idea).

Each router is fitted on the same small real log with the cheap hashing encoder, then checked
for: hyperparameters-only __init__, fit returning self with learned ``_`` attributes, predictions
of the right shape in [0, 1], a budget that is respected, determinism under a seed, and a
get_state/set_state round trip that reproduces the decisions.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from routecast.errors import NotFittedError, RoutingError
from routecast.router.registry import get_router_class, make_router, router_names

FAST = {"finetuned-encoder"}  # trains a transformer end to end: covered by its own slow test

# short training for the contract (behaviour, not quality: quality has its own tests)
ROUTER_PARAMS = {
    "finetuned-encoder": {"max_epochs": 1, "max_seq_length": 32},
    "mlp": {"max_epochs": 5},
    "mf": {"epochs": 5},
}


def _params(name: str) -> dict:
    cls = get_router_class(name)
    params = dict(ROUTER_PARAMS.get(name, {}))
    if "encoder" in cls.param_names():
        params["encoder"] = "hashing:dim=256"
    return {k: v for k, v in params.items() if k in cls.param_names()}


def _fit(name, train):
    router = make_router(name, **_params(name))
    fitted = router.fit(train)
    assert fitted is router, "fit must return self"
    return router


ALL = [n for n in router_names() if n not in FAST]


@pytest.mark.parametrize("name", ALL)
def test_init_stores_hyperparameters_only(name):
    cls = get_router_class(name)
    router = cls(**_params(name))
    learned = [k for k in vars(router) if k.endswith("_") and not k.startswith("_")]
    assert learned == [], f"__init__ set learned attributes {learned}"
    params = router.get_params()
    assert set(params) == set(cls.param_names())
    assert cls.name == name
    for key in cls.search_space:
        assert key in params, f"search_space names unknown hyperparameter {key!r}"
    with pytest.raises(NotFittedError):
        router.predict_quality(["hello"])


@pytest.mark.parametrize("name", ALL)
def test_fit_predict_route(name, small_split):
    train, test = small_split
    router = _fit(name, train)
    if router.evaluation_only:
        router.fit(test)
    texts = list(test.prompts)
    quality = router.predict_quality(texts)
    assert quality.shape == (test.n_prompts, test.n_models)
    assert np.isfinite(quality).all() and quality.min() >= 0 and quality.max() <= 1

    best = router.route(texts)
    assert best.choice.shape == (test.n_prompts,)
    assert set(best.chosen) <= set(test.models)

    cheapest_cost = float(np.nanmin(router.costs_))
    budget = cheapest_cost + 0.25 * (float(np.nanmax(router.costs_)) - cheapest_cost)
    capped = router.route(texts, budget=budget)
    assert capped.expected_cost.mean() <= budget + 1e-12
    with pytest.raises(RoutingError, match="below"):
        router.route(texts, budget=cheapest_cost / 2)


@pytest.mark.parametrize("name", ALL)
def test_deterministic_under_seed(name, small_split):
    train, test = small_split
    a = _fit(name, train)
    b = _fit(name, train)
    if a.evaluation_only:
        a.fit(test), b.fit(test)
    texts = list(test.prompts)
    np.testing.assert_array_equal(a.predict_quality(texts), b.predict_quality(texts))


@pytest.mark.parametrize("name", [n for n in ALL if not get_router_class(n).evaluation_only])
def test_state_round_trip(name, small_split):
    train, test = small_split
    router = _fit(name, train)
    meta, arrays = router.get_state()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    clone = get_router_class(name)(**router.get_params()).set_state(meta, arrays)
    texts = list(test.prompts)
    np.testing.assert_allclose(clone.predict_quality(texts), router.predict_quality(texts), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(clone.route(texts, lam=100.0).choice, router.route(texts, lam=100.0).choice)


def test_all_builtin_routers_documented():
    for name in router_names():
        cls = get_router_class(name)
        assert inspect.getdoc(inspect.getmodule(cls)), f"module of {name} has no docstring"
        assert cls.family in ("a1", "a2")
