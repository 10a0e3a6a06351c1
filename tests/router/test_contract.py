"""One contract, every registered router (the idea of scikit-learn's ``test_common``).

Each router in the registry is fitted on the same small real log (a slice of llmrouter_9models)
with the cheap hashing encoder and checked for: a registry entry that resolves (a broken or
missing module FAILS here, it is never skipped), hyperparameters-only ``__init__``,
``get_params``/``set_params`` and ``sklearn.base.clone``, ``fit`` returning self, predictions of
the right shape in [0, 1], routing and budgets, embeddings giving the texts' predictions,
determinism, the ``get_state``/``set_state`` round trip, and the save -> load round trip through
the checkpoint format in a FRESH interpreter (so loading never depends on what the test process
imported).

Exemptions are not listed here: a router declares them on its class as
:class:`routecast.core.tags.PolicyTags` (``requires_texts``, ``needs_torch``, ``slow_fit``,
``needs_preferences``, ``non_deterministic``, ``quick_params``), next to the code that needs them.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone

from routecast.data.preferences import pairs_from_log
from routecast.errors import CheckpointError, ConfigError, NotFittedError, RoutingError
from routecast.core.checkpoint import load_checkpoint, save_checkpoint
from routecast.core.registry import get_router_class, router_names
from routecast.core.tags import PolicyTags, policy_tags
from tests._support.paths import REPO

ENCODER = "hashing:dim=256"
LAMS = (0.0, 30.0, 300.0)


def _names(where=None) -> list:
    """Registered routers, except test doubles (``test-*``, defined under tests/), as pytest params;
    routers tagged ``slow_fit`` carry the ``slow`` marker. ``where(cls, tags)`` keeps only the
    routers a check applies to. With no ``where``, a name whose class cannot be resolved is still
    listed, so its tests FAIL instead of vanishing (a registry regression is never a skip)."""
    params = []
    for name in router_names():
        if name.startswith("test-"):
            continue
        try:
            cls = get_router_class(name)
            tags = policy_tags(cls)
        except Exception:  # noqa: BLE001 - the tests over every name report it
            if where is None:
                params.append(pytest.param(name, id=name))
            continue
        if where is None or where(cls, tags):
            params.append(pytest.param(name, id=name, marks=[pytest.mark.slow] if tags.slow_fit else []))
    return params


NAMES = _names()


def _params(cls) -> dict:
    """The class's declared quick hyperparameters, with the hashing encoder where it takes one."""
    params = dict(policy_tags(cls).quick_params)
    if "encoder" in cls.param_names():
        params["encoder"] = ENCODER
    return params


def _fit(cls, log):
    router = cls(**_params(cls))
    if policy_tags(cls).needs_preferences:
        fitted = router.fit_preferences(pairs_from_log(log), costs=dict(zip(log.models, log.mean_costs())))
    else:
        fitted = router.fit(log)
    assert fitted is router, f"{cls.__name__}.fit must return self"
    return router


#: training prompts for routers tagged slow_fit (a transformer epoch on 280 prompts is ~10 s)
SLOW_FIT_PROMPTS = 80


def _training_log(cls, train, test):
    """What the contract fits ``cls`` on: the train slice; the test slice it is asked about for an
    evaluation-only router (the oracle); the first SLOW_FIT_PROMPTS of train for a slow_fit one."""
    if cls.evaluation_only:
        return test
    if policy_tags(cls).slow_fit:
        return train.subset(np.arange(SLOW_FIT_PROMPTS))
    return train


@pytest.fixture(scope="module")
def fitted(small_split):
    """name -> router fitted once (see _training_log). Tests must not mutate these."""
    train, test = small_split
    cache: dict = {}

    def get(name):
        if name not in cache:
            cls = get_router_class(name)
            cache[name] = _fit(cls, _training_log(cls, train, test))
        return cache[name]

    return get


# --------------------------------------------------------------------------- registry and class
@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_resolves(name):
    """A name in the registry whose module is missing or does not register it fails here."""
    cls = get_router_class(name)
    assert cls.name == name
    assert cls.family in ("a1", "a2"), f"{name}: family must be 'a1' or 'a2', got {cls.family!r}"
    assert inspect.getdoc(inspect.getmodule(cls)), f"module of {name} has no docstring"
    tags = policy_tags(cls)  # raises TypeError unless the class's tags are a PolicyTags
    unknown = sorted(set(tags.quick_params) - set(cls.param_names()))
    assert not unknown, f"{name}: tags.quick_params names unknown hyperparameters {unknown}"
    assert "encoder" not in tags.quick_params, f"{name}: the contract test sets the encoder itself"
    for key in cls.search_space:
        assert key in cls.param_names(), f"{name}: search_space names unknown hyperparameter {key!r}"
    if tags.needs_preferences:
        assert callable(getattr(cls, "fit_preferences", None)), f"{name}: needs_preferences but no fit_preferences"
    if tags.requires_texts:
        assert not cls.uses_embeddings, f"{name}: requires_texts contradicts uses_embeddings=True"


def _built_with_hyperparameters_only(cls, params):
    """``cls(**params)``, checked to store exactly its hyperparameters, unchanged, and nothing learned."""
    policy = cls(**params)
    learned = [k for k in vars(policy) if k.endswith("_") and not k.startswith("_")]
    assert learned == [], f"__init__ set learned attributes {learned}"
    got = policy.get_params()
    assert list(got) == cls.param_names()
    assert {k: got[k] for k in params} == params, "__init__ must store hyperparameters unchanged"
    assert policy.get_params(deep=False) == got
    return policy


@pytest.mark.parametrize("name", NAMES)
def test_init_stores_hyperparameters_only(name):
    cls = get_router_class(name)
    router = _built_with_hyperparameters_only(cls, _params(cls))
    with pytest.raises(NotFittedError):
        router.predict_quality(["hello"])


@pytest.mark.parametrize("name", NAMES)
def test_set_params_round_trip(name):
    cls = get_router_class(name)
    wanted = cls(**_params(cls)).get_params()
    router = cls()
    assert router.set_params(**wanted) is router
    assert router.get_params() == wanted
    with pytest.raises(ConfigError, match="no_such_knob"):
        router.set_params(no_such_knob=1)


@pytest.mark.parametrize("name", NAMES)
def test_sklearn_clone_gives_an_unfitted_copy(name, fitted):
    router = fitted(name)
    copy = clone(router)
    assert type(copy) is type(router) and copy is not router
    assert copy.get_params() == router.get_params()
    assert not hasattr(copy, "models_"), "clone must not carry learned state"
    with pytest.raises(NotFittedError):
        copy.predict_quality(["hello"])


# --------------------------------------------------------------------------- fit, predict, route
@pytest.mark.parametrize("name", NAMES)
def test_fit_predict_route(name, fitted, small_split):
    _, test = small_split
    router = fitted(name)
    if policy_tags(router).needs_preferences:  # pairs name their models in their own order
        assert set(router.models_) == set(test.models)
    else:
        assert router.models_ == tuple(test.models)
    texts = list(test.prompts)
    quality = router.predict_quality(texts)
    assert quality.shape == (test.n_prompts, test.n_models)
    assert np.isfinite(quality).all() and quality.min() >= 0 and quality.max() <= 1

    best = router.route(texts)
    assert best.choice.shape == (test.n_prompts,)
    rows = np.arange(test.n_prompts)
    np.testing.assert_allclose(best.quality[rows, best.choice], quality.max(axis=1), atol=1e-9)

    cheapest_cost = float(np.nanmin(router.costs_))
    budget = cheapest_cost + 0.25 * (float(np.nanmax(router.costs_)) - cheapest_cost)
    capped = router.route(texts, budget=budget)
    assert capped.expected_cost.mean() <= budget + 1e-12
    assert capped.expected_cost.mean() <= best.expected_cost.mean() + 1e-12
    with pytest.raises(RoutingError, match="below"):
        router.route(texts, budget=cheapest_cost / 2)


@pytest.mark.parametrize("name", _names(lambda cls, tags: cls.uses_embeddings or tags.requires_texts))
def test_embeddings_route_like_texts(name, fitted, small_split):
    """Embedding routers predict the same from precomputed embeddings as from texts; routers
    tagged ``requires_texts`` refuse embeddings with a clear RoutingError."""
    _, test = small_split
    router = fitted(name)
    texts = list(test.prompts)
    if policy_tags(router).requires_texts:
        with pytest.raises(RoutingError, match="text"):
            router.predict_quality(embeddings=np.zeros((len(texts), 8), dtype=np.float32))
        return
    X = router.get_encoder().encode(texts)
    np.testing.assert_allclose(router.predict_quality(embeddings=X), router.predict_quality(texts),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", _names(lambda cls, tags: not tags.non_deterministic))
def test_deterministic(name, fitted, small_split):
    cls = get_router_class(name)
    train, test = small_split
    again = _fit(cls, _training_log(cls, train, test))
    texts = list(test.prompts)
    np.testing.assert_array_equal(again.predict_quality(texts), fitted(name).predict_quality(texts))


@pytest.mark.parametrize("name", _names(lambda cls, tags: callable(getattr(cls, "fit_preferences", None))))
def test_preferences_fit_when_supported(name, small_split):
    """Routers that can learn from pairwise preferences do so on the same log's pairs."""
    cls = get_router_class(name)
    train, test = small_split
    train = train.subset(np.arange(30))  # 30 prompts x 36 model pairs: enough pairs, a fast fit
    router = cls(**_params(cls))
    assert router.fit_preferences(pairs_from_log(train), costs=dict(zip(train.models, train.mean_costs()))) is router
    assert set(router.models_) == set(train.models)
    quality = router.predict_quality(list(test.prompts))
    assert quality.shape == (test.n_prompts, train.n_models)
    assert np.isfinite(quality).all() and quality.min() >= 0 and quality.max() <= 1


def _one_model_per_prompt(log):
    """``log`` as a traffic log: each prompt keeps one model's score (round robin)."""
    import dataclasses

    keep = np.arange(log.n_prompts) % log.n_models
    scores = np.full(log.scores.shape, np.nan)
    scores[np.arange(log.n_prompts), keep] = log.scores[np.arange(log.n_prompts), keep]
    return dataclasses.replace(log, scores=scores)


@pytest.mark.parametrize("name", _names(lambda cls, tags: tags.needs_shared_prompts))
def test_traffic_log_refused_with_the_fix_when_tagged(name, small_split):
    """A router tagged ``needs_shared_prompts`` cannot learn from one model per prompt: fitting it
    on a traffic log is one error naming the fill command and the routers that can."""
    cls = get_router_class(name)
    traffic = _one_model_per_prompt(small_split[0].subset(np.arange(60)))
    assert traffic.is_traffic()
    with pytest.raises(RoutingError, match=r"traffic log .*routecast collect --fill LOG --budget USD"):
        cls(**_params(cls)).fit(traffic)


# --------------------------------------------------------------------------- state and checkpoints
@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip(name, fitted, small_split):
    _, test = small_split
    router = fitted(name)
    meta, arrays = router.get_state()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    json.dumps(meta, allow_nan=True)  # JSON-able, or this raises
    copy = type(router)(**router.get_params()).set_state(meta, arrays)
    texts = list(test.prompts)
    np.testing.assert_allclose(copy.predict_quality(texts), router.predict_quality(texts), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(copy.route(texts, lam=100.0).choice, router.route(texts, lam=100.0).choice)


_FRESH_PROCESS = r"""
import json, sys
import routecast
jobs = json.loads(open(sys.argv[1]).read())
out = {}
for name, job in jobs.items():
    try:
        runtime = routecast.load(job["checkpoint"])
        out[name] = {str(lam): [[d["model"], d["predicted_quality"]] for d in runtime.route(job["prompts"], lam=lam)]
                     for lam in job["lams"]}
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fresh_process_routes(fitted, small_split, tmp_path_factory):
    """Save every exportable router and route the test prompts from its checkpoint in ONE fresh
    interpreter. name -> {lam: [[model, quality by model], ...]} or {"error": ...}; a router that
    fails to fit or save is recorded as an error (its test fails; the others still run)."""
    _, test = small_split
    prompts = [str(p) for p in test.prompts]
    root = tmp_path_factory.mktemp("contract-checkpoints")
    jobs, errors = {}, {}
    for param in NAMES:
        name = param.values[0]
        try:
            cls = get_router_class(name)
            if cls.evaluation_only:
                continue
            ckpt = save_checkpoint(fitted(name), root / name)
        except Exception as exc:  # noqa: BLE001 - reported per router by the test below
            errors[name] = {"error": f"fit/save failed: {type(exc).__name__}: {exc}"}
            continue
        jobs[name] = {"checkpoint": str(ckpt), "prompts": prompts, "lams": list(LAMS)}
    (root / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(root / "jobs.json")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {**results, **errors}, {name: job["checkpoint"] for name, job in jobs.items()}


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_in_fresh_process(name, fitted, small_split, fresh_process_routes, tmp_path):
    _, test = small_split
    router = fitted(name)
    if router.evaluation_only:
        with pytest.raises(CheckpointError, match="evaluation-only"):
            save_checkpoint(router, tmp_path / "ck")
        assert not (tmp_path / "ck").exists()
        return
    results, checkpoints = fresh_process_routes
    got_by_lam = results[name]
    assert "error" not in got_by_lam, got_by_lam.get("error")
    prompts = [str(p) for p in test.prompts]
    for lam in LAMS:
        expected = router.route(prompts, lam=lam)
        got = got_by_lam[str(lam)]
        assert [g[0] for g in got] == expected.chosen, f"{name} at lam={lam}"
        got_quality = np.array([[g[1][m] for m in router.models_] for g in got])
        np.testing.assert_allclose(got_quality, expected.quality, rtol=0, atol=1e-6)
    loaded = load_checkpoint(checkpoints[name])
    assert type(loaded) is type(router)
    assert loaded.get_params() == router.get_params()
    assert loaded.models_ == router.models_
    np.testing.assert_array_equal(loaded.costs_, router.costs_)


_TORCH_FREE_PROCESS = r"""
import json, sys
import numpy as np
from routecast.data import load_log
from routecast.core.registry import get_router_class
log = load_log("llmrouter_9models")
log = log.subset(np.sort(np.random.default_rng(0).choice(log.n_prompts, size=120, replace=False)))
out = {}
for name, params in json.loads(sys.argv[1]).items():
    router = get_router_class(name)(**params).fit(log)
    router.route([str(p) for p in log.prompts[:20]], lam=30.0)
    out[name] = "torch" in sys.modules
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def torch_after_each_router():
    """In one fresh interpreter, fit and route every router NOT tagged ``needs_torch``, in turn;
    name -> whether torch had been imported by then."""
    jobs = {}
    for param in NAMES:
        name = param.values[0]
        try:
            cls = get_router_class(name)
        except Exception:  # noqa: BLE001 - test_registry_entry_resolves reports it
            continue
        if not policy_tags(cls).needs_torch:
            jobs[name] = _params(cls)
    done = subprocess.run([sys.executable, "-c", _TORCH_FREE_PROCESS, json.dumps(jobs)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", _names(lambda cls, tags: not tags.needs_torch))
def test_torch_only_when_tagged(name, torch_after_each_router):
    """Routers not tagged ``needs_torch`` keep torch out of the process (light serving)."""
    assert name in torch_after_each_router
    first = next((n for n, loaded in torch_after_each_router.items() if loaded), None)
    assert not torch_after_each_router[name], (
        f"torch was imported after fitting and routing {name!r} (first router after which it was "
        f"loaded: {first!r}); tag the router needs_torch=True or keep torch out of it")


# --------------------------------------------------------------------------- the tags themselves
def test_tags_are_validated_and_frozen():
    class Untagged:
        pass

    class Mistagged:
        tags = {"slow_fit": True}  # a dict would silently exempt nothing

    assert policy_tags(Untagged) == PolicyTags()
    assert policy_tags(Untagged()) is policy_tags(Untagged)
    with pytest.raises(TypeError, match="Mistagged.tags must be a routecast.core.tags.PolicyTags"):
        policy_tags(Mistagged)
    with pytest.raises(TypeError, match="slow_fit must be a bool"):
        PolicyTags(slow_fit="yes")
    tags = PolicyTags(quick_params={"max_epochs": 1})
    with pytest.raises(TypeError):
        tags.quick_params["max_epochs"] = 99  # read-only: tags are shared by every instance
    with pytest.raises(AttributeError):
        tags.slow_fit = True
    assert policy_tags(get_router_class("finetuned-encoder")).slow_fit is True
    assert policy_tags(get_router_class("knn")) == PolicyTags()


# ------------------------------------------------------- every policy: cascades and the answer scorer
# Routers are checked above; the same contract (hyperparameters from __init__, get/set_params,
# clone, fit returning self, the fitted check) applies to every other registered policy, on a small
# synthetic log with responses (cascades need a validation split; the answer scorer reads answers).

from routecast.core.estimator import Estimator  # noqa: E402
from routecast.core.registry import KINDS, get_policy_class, policy_names  # noqa: E402

POLICIES = [pytest.param(name, id=name) for name in policy_names() if not name.startswith("test-")]
OTHER_POLICIES = [pytest.param(name, id=name) for name in policy_names() if name not in router_names()]
OTHER_NAMES = [p.values[0] for p in OTHER_POLICIES]


def _policy_params(cls) -> dict:
    """Declared quick hyperparameters, with the hashing encoder for every encoder hyperparameter."""
    params = dict(policy_tags(cls).quick_params)
    for key in cls.param_names():
        if key == "encoder" or key.endswith("_encoder"):
            params[key] = ENCODER
    return params


def _fit_policy(cls, parts):
    train, val = parts
    policy = cls(**_policy_params(cls))
    fitted = policy.fit(train, val) if cls.kind == "cascade" else policy.fit(train)
    assert fitted is policy, f"{cls.__name__}.fit must return self"
    return policy


@pytest.fixture(scope="module")
def policy_parts():
    from tests.cascade.test_cascade_router import parts, synthetic

    train, val, _ = parts(synthetic(240, hedge=True, seed=3))
    return train, val


def test_every_policy_kind_is_registered():
    kinds = {get_policy_class(name).kind for name in policy_names()}
    assert {"router", "cascade", "scorer"} <= kinds
    assert {"cascade-routing", "cascade", "answer-scorer"} <= set(OTHER_NAMES)
    assert not set(OTHER_NAMES) & set(router_names()), "a cascade or scorer must not be offered as a router"
    with pytest.raises(ConfigError, match="unknown router 'cascade-routing'"):
        get_router_class("cascade-routing")


@pytest.mark.parametrize("name", POLICIES)
def test_policy_uses_the_kernel_estimator_contract(name):
    """One way to read hyperparameters for every policy: no class writes its own get/set_params."""
    cls = get_policy_class(name)
    assert issubclass(cls, Estimator), f"{name} does not derive from routecast.core.estimator.Estimator"
    assert cls.name == name and cls.kind in KINDS
    for method in ("get_params", "set_params", "param_names"):
        assert getattr(cls, method).__qualname__ == f"Estimator.{method}", f"{name} overrides {method}"
    policy_tags(cls)  # a TypeError unless the tags are PolicyTags
    unknown = sorted(set(policy_tags(cls).quick_params) - set(cls.param_names()))
    assert not unknown, f"{name}: tags.quick_params names unknown hyperparameters {unknown}"


@pytest.mark.parametrize("name", OTHER_POLICIES)
def test_policy_init_stores_hyperparameters_only(name):
    cls = get_policy_class(name)
    policy = _built_with_hyperparameters_only(cls, _policy_params(cls))
    got = policy.get_params()
    assert not policy.is_fitted()
    with pytest.raises(NotFittedError, match=r"not fitted; call fit\("):
        policy._check_fitted()
    assert policy.set_params(**got) is policy and policy.get_params() == got
    with pytest.raises(ConfigError, match="no_such_knob"):
        policy.set_params(no_such_knob=1)


@pytest.mark.parametrize("name", OTHER_POLICIES)
def test_policy_fit_and_clone(name, policy_parts):
    cls = get_policy_class(name)
    policy = _fit_policy(cls, policy_parts)
    assert policy.is_fitted()
    copy = clone(policy)
    assert type(copy) is cls and copy is not policy and not copy.is_fitted()
    assert copy.get_params() == policy.get_params()
    assert _fit_policy(cls, policy_parts).get_params() == policy.get_params()


def test_cascade_router_operating_points_share_the_kernel_resolution(policy_parts):
    """CascadeRouter and Router resolve knobs and named points in routecast.core.operating_points."""
    from routecast.core.operating_points import OperatingPoints

    cascade = _fit_policy(get_policy_class("cascade-routing"), policy_parts)
    router = get_router_class("linear")(encoder=ENCODER).fit(policy_parts[0])
    for policy in (cascade, router):
        assert type(policy).lam_for is OperatingPoints.lam_for
        assert type(policy).add_operating_point is OperatingPoints.add_operating_point
    lam = float(cascade.lams_[len(cascade.lams_) // 2])
    cascade.add_operating_point("mid", lam=lam)
    assert cascade.default_operating_point() == "mid" and cascade.lam_for() == lam
    router.add_operating_point("mid", lam=2.0)
    assert router.default_operating_point() == "mid" and router.lam_for() == 2.0
    assert router.route(list(policy_parts[0].prompts[:3])).lam == 2.0
    for policy in (cascade, router):
        with pytest.raises(RoutingError, match="not both"):
            policy.lam_for(lam=1.0, operating_point="mid")


def test_retired_hyperparameters_load_with_a_warning():
    """Trainer options were hyperparameters of the Lightning routers: a checkpoint or config that
    still names them builds the router (values ignored, said once) instead of being refused."""
    from routecast.core.policy import RoutecastWarning
    from routecast.core.registry import check_router_params, make_router

    with pytest.warns(RoutecastWarning, match="ignored accelerator, devices"):
        router = make_router("mlp", hidden_dim=16, devices=2, accelerator="cpu")
    assert router.get_params()["hidden_dim"] == 16 and "devices" not in router.get_params()
    assert router.trainer_options()["devices"] == 1  # where it trains is set per fit, never read from a file
    check_router_params("mlp", {"devices": 2})
    with pytest.raises(ConfigError, match="no hyperparameter 'devices'"):
        check_router_params("knn", {"devices": 2})
