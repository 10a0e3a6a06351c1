"""The group priors (cluster-prior, task-prior), prior-residual and irt on small real subsets:
fit/predict/route, the properties that define them, and checkpoint round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from routecast.data.outcome_log import OutcomeLog
from routecast.errors import ConfigError, RoutingError
from routecast.core.checkpoint import load_checkpoint, save_checkpoint
from routecast.router.cluster_prior import K_GRID
from routecast.router.group_prior import STRENGTH_GRID, masked_brier, shrunk_group_means
from routecast.core.registry import make_router

HASHING = "hashing:dim=256"

QUICK = {
    "cluster-prior": {"k": 5, "shrinkage": 2.0},
    "task-prior": {},
    "prior-residual": {"prior": "task-prior", "residual": "knn", "k": 10},
    "irt": {"max_epochs": 5, "hidden_dim": 32},
}


def _fit(name, train, **params):
    return make_router(name, encoder=HASHING, **{**QUICK[name], **params}).fit(train)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_fit_predict_route_and_checkpoint_round_trip(name, small_split, tmp_path):
    train, test = small_split
    router = _fit(name, train)
    texts = list(test.prompts)
    quality = router.predict_quality(texts)
    assert quality.shape == (test.n_prompts, test.n_models)
    assert np.isfinite(quality).all() and 0 <= quality.min() and quality.max() <= 1
    budget = float(np.quantile(router.costs_, 0.3))
    capped = router.route(texts, budget=budget)
    assert capped.expected_cost.mean() <= budget + 1e-12
    best = router.route(texts, lam=0.0)
    assert (quality[np.arange(len(texts)), best.choice] >= quality.max(axis=1) - 1e-12).all()

    path = save_checkpoint(router, tmp_path / name)
    loaded = load_checkpoint(path)
    assert type(loaded) is type(router)
    np.testing.assert_allclose(loaded.predict_quality(texts), quality, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(loaded.route(texts, lam=3000.0).choice, router.route(texts, lam=3000.0).choice)


# ------------------------------------------------------------------ shrinkage
def test_shrunk_group_means_by_hand():
    scores = np.array([[1.0, 0.0], [0.0, np.nan], [1.0, 1.0]])
    groups = np.array([0, 0, 1])
    raw = shrunk_group_means(groups, scores, 3, strength=0.0)
    np.testing.assert_allclose(raw[:2], [[0.5, 0.0], [1.0, 1.0]])
    glob = np.array([2 / 3, 0.5])
    np.testing.assert_allclose(raw[2], glob)  # empty group -> global mean
    shrunk = shrunk_group_means(groups, scores, 3, strength=2.0)
    # group 0, model 0: (1 + 0 + 2 * 2/3) / (2 + 2); model 1 has one logged cell: (0 + 2 * 0.5) / 3
    np.testing.assert_allclose(shrunk[0], [(1 + 4 / 3) / 4, 1 / 3])
    assert masked_brier(np.array([[0.5, 0.5]]), np.array([[1.0, np.nan]])) == pytest.approx(0.25)


# --------------------------------------------------------------- cluster prior
def test_cluster_prior_with_one_cluster_is_the_global_mean(small_split):
    train, test = small_split
    for strength in (0.0, 10.0):
        router = _fit("cluster-prior", train, k=1, shrinkage=strength)
        quality = router.predict_quality(list(test.prompts))
        np.testing.assert_allclose(quality, np.tile(train.mean_scores(), (test.n_prompts, 1)), atol=1e-12)
    assert router.k_ == 1


def test_cluster_prior_auto_picks_k_and_strength_on_training_data_only(small_split):
    train, _ = small_split
    router = _fit("cluster-prior", train, k="auto", shrinkage="auto")
    assert len(router.selection_) == len(K_GRID) * len(STRENGTH_GRID)
    best_key = min(router.selection_, key=router.selection_.get)
    assert best_key == f"k={router.k_},shrinkage={router.shrinkage_:g}"
    assert router.k_ in K_GRID and router.k_ > 1  # clusters beat the global mean on real data
    assert router.centroids_.shape == (router.k_, 256)
    np.testing.assert_allclose(np.linalg.norm(router.centroids_, axis=1), 1.0, atol=1e-5)


def test_cluster_prior_bad_k_names_the_parameter(small_split):
    train, _ = small_split
    with pytest.raises(ConfigError, match="k must be"):
        _fit("cluster-prior", train, k=0)
    with pytest.raises(ConfigError, match="shrinkage"):
        _fit("cluster-prior", train, shrinkage=-1)


# ----------------------------------------------------------------- task prior
def test_task_prior_routes_each_task_to_its_best_train_model(small_split):
    train, test = small_split
    router = _fit("task-prior", train, shrinkage=0.0)
    assert router.column_ == "benchmark"
    tasks = train.meta["benchmark"].astype(str).to_numpy()
    quality = router.predict_quality_for_tasks(list(router.tasks_))
    decision = router.route_from_quality(quality, lam=0.0)
    for i, task in enumerate(router.tasks_):
        means = np.nanmean(train.scores[tasks == task], axis=0)
        best = np.flatnonzero(means >= means.max() - 1e-12)
        assert decision.choice[i] in best, task
        np.testing.assert_allclose(quality[i], means)
    # known task beats the classifier; a task never seen falls back to it
    test_tasks = list(test.meta["benchmark"].astype(str))
    by_task = router.predict_quality_for_tasks(test_tasks, list(test.prompts))
    index = {t: i for i, t in enumerate(router.tasks_)}
    seen = np.array([t in index for t in test_tasks])
    assert 0 < seen.sum() < len(seen)  # this slice has a benchmark that train lacks
    np.testing.assert_allclose(by_task[seen], quality[[index[t] for t, ok in zip(test_tasks, seen) if ok]])
    np.testing.assert_allclose(by_task[~seen], router.predict_quality(list(test.prompts[~seen])))
    unseen = router.predict_quality_for_tasks(["no-such-task"] * 3, list(test.prompts[:3]))
    np.testing.assert_allclose(unseen, router.predict_quality(list(test.prompts[:3])))
    with pytest.raises(RoutingError, match="no task the training split knew"):
        router.predict_quality_for_tasks(["no-such-task"])


def test_task_prior_classifier_finds_the_benchmark_of_unseen_prompts(small_split):
    train, test = small_split
    router = _fit("task-prior", train)
    X = router.get_encoder().encode(list(test.prompts))
    from routecast.router.group_prior import nearest_group

    predicted = np.array(router.tasks_)[nearest_group(X, router.centroids_)]
    accuracy = float((predicted == test.meta["benchmark"].astype(str).to_numpy()).mean())
    assert accuracy > 0.3, accuracy  # 14 benchmarks, hashing encoder: chance is about 0.07


def test_task_prior_needs_a_task_column(small_split):
    train, _ = small_split
    bare = dataclasses.replace(train, meta=pd.DataFrame(index=range(train.n_prompts)))
    with pytest.raises(RoutingError, match="task column"):
        _fit("task-prior", bare)
    with pytest.raises(RoutingError, match="'topic' is not in the metadata"):
        _fit("task-prior", train, column="topic")


# ------------------------------------------------------------- prior-residual
def test_prior_residual_with_zero_blend_is_the_prior(small_split):
    train, test = small_split
    texts = list(test.prompts)
    zero = _fit("prior-residual", train, blend=0.0)
    prior = _fit("task-prior", train)
    np.testing.assert_allclose(zero.predict_quality(texts), prior.predict_quality(texts), atol=1e-12)
    full = _fit("prior-residual", train, blend=1.0)
    assert not np.allclose(full.predict_quality(texts), prior.predict_quality(texts))
    auto = _fit("prior-residual", train, blend="auto")
    assert auto.blend_ in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert min(auto.selection_, key=auto.selection_.get) == f"blend={auto.blend_:g}"
    with pytest.raises(ConfigError, match="residual must be"):
        _fit("prior-residual", train, residual="forest")


def test_prior_residual_given_tasks_adds_the_residual_to_the_task_mean(small_split):
    train, test = small_split
    texts, tasks = list(test.prompts), list(test.meta["benchmark"].astype(str))
    prior = _fit("task-prior", train)
    zero = _fit("prior-residual", train, blend=0.0)
    np.testing.assert_allclose(zero.predict_quality_for_tasks(tasks, texts),
                               prior.predict_quality_for_tasks(tasks, texts), atol=1e-12)
    # with blend 1 the prediction is the task mean plus the kNN residual (learned against each
    # training prompt's logged task), which moves it off the task mean
    full = _fit("prior-residual", train, blend=1.0)
    given = full.predict_quality_for_tasks(tasks, texts)
    assert given.shape == (test.n_prompts, test.n_models)
    assert not np.allclose(given, prior.predict_quality_for_tasks(tasks, texts))
    with pytest.raises(RoutingError, match="takes no tasks"):
        _fit("prior-residual", train, prior="cluster-prior", blend=0.0).predict_quality_for_tasks(tasks, texts)


def _planted_group_log(n_per_task=300, dim=8, seed=0):
    """Two tasks whose per-prompt signal points in opposite directions: model 0 does better than
    its task mean where x[0] is large in task "a" and where it is small in task "b"; a third task
    "tiny" has too few prompts for a residual of its own."""
    rng = np.random.default_rng(seed)
    tasks = ["a"] * n_per_task + ["b"] * n_per_task + ["tiny"] * 10
    n = len(tasks)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    sign = np.array([{"a": 1.0, "b": -1.0, "tiny": 0.0}[t] for t in tasks])
    p0 = np.clip(0.5 + 0.3 * sign * np.tanh(X[:, 0]), 0.02, 0.98)
    scores = np.column_stack([(rng.random(n) < p0).astype(float), np.full(n, 0.5)])
    log = OutcomeLog(prompt_ids=[f"p{i}" for i in range(n)], prompts=[f"prompt {i}" for i in range(n)],
                     models=("m0", "m1"), scores=scores, costs=np.tile([0.1, 0.2], (n, 1)),
                     meta=pd.DataFrame({"benchmark": tasks}))
    return log, X, tasks, sign * np.tanh(X[:, 0])


def test_group_scope_learns_opposite_signals_a_global_residual_averages_away():
    log, X, tasks, planted = _planted_group_log()
    params = dict(prior="task-prior", residual="linear", alpha=1.0, blend=1.0, encoder=HASHING)
    group = make_router("prior-residual", scope="group", **params).fit(log, X)
    glob = make_router("prior-residual", scope="global", **params).fit(log, X)
    prior = make_router("task-prior", encoder=HASHING).fit(log, X)
    base = prior.predict_quality_for_tasks(tasks, embeddings=X)[:, 0]
    big = np.array([t != "tiny" for t in tasks])
    r_group = group.predict_quality_for_tasks(tasks, embeddings=X)[:, 0] - base
    r_glob = glob.predict_quality_for_tasks(tasks, embeddings=X)[:, 0] - base
    # per task the sign of x[0]'s effect is learned; one ridge over both tasks sees it cancel
    assert np.corrcoef(r_group[big], planted[big])[0, 1] > 0.8
    assert abs(np.corrcoef(r_glob[big], planted[big])[0, 1]) < 0.3
    # the tiny task (10 < min_group_prompts=30 prompts) keeps its prior exactly
    np.testing.assert_allclose(r_group[~big], 0.0, atol=1e-12)
    assert group.group_coef_.shape == (3, 2, X.shape[1])


def test_group_scope_checkpoint_round_trip_and_errors(small_split, tmp_path):
    train, test = small_split
    router = _fit("prior-residual", train, residual="linear", scope="group", blend="auto", min_group_prompts=10)
    assert (np.abs(router.group_coef_).sum(axis=(1, 2)) > 0).any()
    texts, tasks = list(test.prompts), list(test.meta["benchmark"].astype(str))
    loaded = load_checkpoint(save_checkpoint(router, tmp_path / "group"))
    np.testing.assert_allclose(loaded.predict_quality_for_tasks(tasks, texts),
                               router.predict_quality_for_tasks(tasks, texts), atol=1e-6)
    np.testing.assert_allclose(loaded.predict_quality(texts), router.predict_quality(texts), atol=1e-6)
    log, X, _, _ = _planted_group_log()
    with pytest.raises(ConfigError, match="scope='group' learns a ridge per group and needs residual='linear'"):
        make_router("prior-residual", prior="task-prior", residual="knn", scope="group",
                    encoder=HASHING).fit(log, X)
    with pytest.raises(ConfigError, match="scope must be one of global, group"):
        make_router("prior-residual", scope="task", encoder=HASHING).fit(log, X)
    with pytest.raises(ConfigError, match="min_group_prompts must be an integer >= 2"):
        make_router("prior-residual", residual="linear", scope="group", min_group_prompts=1,
                    encoder=HASHING).fit(log, X)


def test_group_scope_with_a_cluster_prior_fits_one_residual_per_cluster(small_split):
    train, test = small_split
    router = _fit("prior-residual", train, prior="cluster-prior", residual="linear", scope="group",
                  blend=1.0, min_group_prompts=10)
    assert router.group_coef_.shape[0] == router.prior_router_.k_
    quality = router.predict_quality(list(test.prompts))
    assert quality.shape == (test.n_prompts, test.n_models) and 0 <= quality.min() and quality.max() <= 1


# ------------------------------------------------------------------------- irt
def _planted_irt_log(n=1500, dim=16, seed=0):
    """Synthetic outcomes from a 1-D IRT model: ability order 0 < 1 < 2 < 3, difficulty linear in X."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    difficulty = X @ rng.normal(size=dim) / np.sqrt(dim) * 1.5
    ability = np.array([-1.5, -0.5, 0.5, 1.5])
    p = 1 / (1 + np.exp(-(ability[None, :] - difficulty[:, None])))
    scores = (rng.random(p.shape) < p).astype(np.float64)
    scores[rng.random(scores.shape) < 0.1] = np.nan  # unlogged cells are masked out
    costs = np.tile([0.1, 0.2, 0.3, 0.4], (n, 1))
    log = OutcomeLog(prompt_ids=[f"p{i}" for i in range(n)], prompts=[f"prompt {i}" for i in range(n)],
                     models=("m0", "m1", "m2", "m3"), scores=scores, costs=costs)
    return log, X, difficulty


def test_irt_recovers_planted_ability_order_and_difficulty():
    log, X, difficulty = _planted_irt_log()
    router = make_router("irt", ability_dim=2, hidden_dim=32, n_layers=1, max_epochs=60, lr=5e-3,
                         patience=8, encoder=HASHING).fit(log, X)
    abilities = router.model_abilities(X)
    assert list(np.argsort(abilities)) == [0, 1, 2, 3], abilities
    rho = pd.Series(router.difficulty(X)).corr(pd.Series(difficulty), method="spearman")
    assert rho > 0.8, rho
    quality = router.predict_quality(embeddings=X)
    truth = 1 / (1 + np.exp(-(np.array([-1.5, -0.5, 0.5, 1.5])[None, :] - difficulty[:, None])))
    assert np.abs(quality - truth).mean() < 0.08
