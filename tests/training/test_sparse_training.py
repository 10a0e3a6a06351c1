"""Learning and estimating from traffic logs (issue 23): propensity weights reach every router that
fits from logged cells, group priors shrink sparse cells by empirical Bayes, the DR interval of a
policy has an honest width, and ``--estimator`` picks the estimator the report names."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from routecast.core.registry import make_router
from routecast.data.outcome_log import OutcomeLog
from routecast.router.estimated_split import estimated_split, policy_interval
from routecast.router.group_prior import eb_strength, shrunk_group_means
from tests._support.data_files import traffic_chat_log

HASHING = "hashing:dim=64"


def _skewed_traffic(n: int = 3000, seed: int = 0, logged_propensity: bool = True):
    """Two models on one task. Half the prompts are easy (model a right 90 %), half hard (30 %):
    a's true mean is 0.6. The logging policy sends easy prompts to a with probability 0.8 and hard
    ones with 0.2, so a's logged cells are mostly easy (unweighted mean 0.78)."""
    rng = np.random.default_rng(seed)
    easy = np.arange(n) % 2 == 0
    truth_a = (rng.random(n) < np.where(easy, 0.9, 0.3)).astype(float)
    truth_b = (rng.random(n) < 0.5).astype(float)
    p_a = np.where(easy, 0.8, 0.2)
    to_a = rng.random(n) < p_a
    scores = np.full((n, 2), np.nan)
    scores[to_a, 0] = truth_a[to_a]
    scores[~to_a, 1] = truth_b[~to_a]
    meta = {"benchmark": ["all"] * n}
    if logged_propensity:
        meta["propensity"] = np.where(to_a, p_a, 1 - p_a)
    return OutcomeLog([f"p{i}" for i in range(n)], [f"q{i}" for i in range(n)], ("a", "b"), scores,
                      np.tile([1.0, 2.0], (n, 1)), meta=pd.DataFrame(meta))


def test_task_prior_weighted_by_logged_propensities_recovers_the_quality():
    weighted = make_router("task-prior", shrinkage=0.0, encoder=HASHING).fit(_skewed_traffic())
    unweighted = make_router("task-prior", shrinkage=0.0, encoder=HASHING).fit(_skewed_traffic(logged_propensity=False))
    assert abs(weighted.table_[0, 0] - 0.6) < 0.03  # the whole prompt distribution
    assert abs(unweighted.table_[0, 0] - 0.78) < 0.03  # the logging policy's share of easy prompts
    assert abs(weighted.table_[0, 1] - 0.5) < 0.04
    best = make_router("best-single").fit(_skewed_traffic())
    assert best.mean_scores_[0] == pytest.approx(weighted.table_[0, 0])


@pytest.mark.parametrize("name", ["mlp", "mf"])
def test_nets_weighted_by_logged_propensities_recover_the_quality(name):
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_lightning")
    fits = {}
    for logged in (True, False):
        log = _skewed_traffic(n=2000, logged_propensity=logged)
        X = np.random.default_rng(1).normal(size=(log.n_prompts, 8)).astype(np.float32) * 0.01  # no signal
        params = ({"hidden_dim": 8, "n_layers": 1, "max_epochs": 30, "patience": 30} if name == "mlp"
                  else {"epochs": 30})
        router = make_router(name, lr=1e-2, encoder=HASHING, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            router.fit(log, X)
        fits[logged] = float(router.predict_quality(embeddings=X)[:, 0].mean())
    log = _skewed_traffic(n=2000)
    cells = ~np.isnan(log.scores[:, 0])
    w = log.propensity_weights()[cells, 0]
    weighted_mean = float((w * log.scores[cells, 0]).sum() / w.sum())  # 0.571 on this draw (truth 0.6)
    assert abs(fits[True] - weighted_mean) < 0.04 and abs(fits[True] - 0.6) < 0.07
    assert abs(fits[False] - float(log.scores[cells, 0].mean())) < 0.04  # 0.766: the logging policy's mix


def test_knn_on_a_traffic_log_takes_each_models_own_neighbours(tmp_path):
    log = _skewed_traffic(n=600)
    easy = np.arange(600) % 2 == 0
    X = np.where(easy[:, None], [1.0, 0.0], [0.0, 1.0]) + np.random.default_rng(2).normal(size=(600, 2)) * 0.01
    X = np.hstack([X, np.zeros((600, 62))])  # the encoder's width, so the checkpoint's probe fits
    router = make_router("knn", k=20, encoder=HASHING).fit(log, X)
    q = router.predict_quality(embeddings=X[:2])  # an easy and a hard prompt
    # 20 logged cells of model a each: ~0.9 on easy prompts, ~0.3 on hard ones
    assert abs(q[0, 0] - 0.9) < 0.2 and abs(q[1, 0] - 0.3) < 0.25
    assert router.train_weights_.shape == (600, 2) and (router.train_weights_[np.isnan(log.scores)] == 0).all()
    complete = OutcomeLog(log.prompt_ids, log.prompts, log.models, np.nan_to_num(log.scores), log.costs)
    assert not hasattr(make_router("knn", k=20, encoder=HASHING).fit(complete, X), "train_weights_")
    from routecast.core.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(save_checkpoint(router, tmp_path / "knn"))  # the weights travel with it
    np.testing.assert_array_equal(loaded.predict_quality(embeddings=X[:50]), router.predict_quality(embeddings=X[:50]))


def test_eb_strength_is_within_over_between_variance():
    # 4 groups of 100 binary cells with means 0.2, 0.4, 0.6, 0.8: sigma2 = 80/396, tau2 = (20 - 3 sigma2) / 300
    scores = np.concatenate([(np.arange(100) < 100 * p).astype(float) for p in (0.2, 0.4, 0.6, 0.8)])[:, None]
    groups = np.repeat(np.arange(4), 100)
    sigma2 = 80 / 396
    assert eb_strength(groups, scores, 4)[0] == pytest.approx(sigma2 / ((20 - 3 * sigma2) / 300))
    # no spread between groups beyond noise: pool them all
    flat = np.tile((np.arange(100) < 50).astype(float), 4)[:, None]
    assert eb_strength(groups, flat, 4)[0] >= 1e5


def test_task_prior_shrinks_a_two_cell_task_by_the_empirical_bayes_strength():
    # model a: 4 tasks of 100 logged cells (means 0.2..0.8) and a 5th task where it served 2 prompts, both right
    rows = [(t, float(i < 100 * p)) for t, p in enumerate((0.2, 0.4, 0.6, 0.8)) for i in range(100)] + [(4, 1.0)] * 2
    n = len(rows)
    scores = np.full((n, 2), np.nan)
    scores[:, 0] = [s for _, s in rows]
    scores[::2, 1], scores[::2, 0] = 0.5, np.nan  # model b on every other prompt: a traffic log
    tasks = [f"t{t}" for t, _ in rows]
    log = OutcomeLog([f"p{i}" for i in range(n)], [f"q{i}" for i in range(n)], ("a", "b"), scores,
                     np.ones((n, 2)), meta=pd.DataFrame({"benchmark": tasks}))
    assert log.is_sparse()
    router = make_router("task-prior", shrinkage=0.0, encoder=HASHING).fit(log)
    groups = np.array([router.tasks_.index(t) for t in tasks])
    strength = eb_strength(groups, scores, len(router.tasks_))[0]
    assert 1.0 < strength < 20.0
    global_a = np.nanmean(scores[:, 0])
    small = router.tasks_.index("t4")
    logged_small = (~np.isnan(scores[groups == small, 0])).sum()
    expected = (logged_small * 1.0 + strength * global_a) / (logged_small + strength)
    assert router.table_[small, 0] == pytest.approx(expected)
    assert router.table_[small, 0] < 0.5 + 0.5 * global_a  # moved most of the way to the model's mean
    # a complete log keeps the configured shrinkage (0: the raw task mean)
    complete = OutcomeLog(log.prompt_ids, log.prompts, log.models, np.nan_to_num(scores, nan=1.0), log.costs,
                          meta=log.meta)
    table = make_router("task-prior", shrinkage=0.0, encoder=HASHING).fit(complete).table_
    assert table[small, 0] == 1.0
    np.testing.assert_array_equal(table, shrunk_group_means(groups, complete.scores, len(router.tasks_), 0.0))


def _rare_model_case(seed: int):
    """13-model-like case in two: a rarely logged model (p = 0.03) right 85 % of the time."""
    rng = np.random.default_rng(seed)
    n = 400
    truth = np.column_stack([rng.random(n) < 0.85, rng.random(n) < 0.7]).astype(float)
    p = np.array([0.03, 0.97])
    chosen = rng.choice(2, size=n, p=p)
    scores = np.full((n, 2), np.nan)
    scores[np.arange(n), chosen] = truth[np.arange(n), chosen]
    meta = pd.DataFrame({"propensity": p[chosen]})
    log = OutcomeLog([f"p{i}" for i in range(n)], [f"q{i}" for i in range(n)], ("rare", "common"), scores,
                     np.ones((n, 2)), meta=meta)
    return log, truth


def test_dr_interval_has_width_and_covers_when_the_rare_cells_are_all_right():
    train, _ = _rare_model_case(0)
    covered = 0
    for seed in range(1, 41):
        split, truth = _rare_model_case(seed)
        estimate, (lo, hi) = policy_interval(split, train, np.zeros(split.n_prompts, dtype=int), seed=seed)
        assert hi - lo > 0.05  # never a zero-width interval, even when every logged rare cell is 1
        covered += lo <= truth[:, 0].mean() <= hi
        assert lo <= estimate <= hi
    assert covered >= 36  # 95 % nominal, >= 90 % of 40 re-draws
    # the case the plain bootstrap collapses on: every logged cell of the rare model right
    split, truth = _rare_model_case(3)
    rare = ~np.isnan(split.scores[:, 0])
    scores = split.scores.copy()
    scores[rare, 0] = 1.0
    lucky = OutcomeLog(split.prompt_ids, split.prompts, split.models, scores, split.costs, meta=split.meta)
    estimate, (lo, hi) = policy_interval(lucky, train, np.zeros(split.n_prompts, dtype=int))
    assert hi - lo > 0.1 and lo < 0.85


def test_snips_and_ips_estimates():
    log, truth = _rare_model_case(5)
    train, _ = _rare_model_case(0)
    ips, info = estimated_split(log, train, estimator="ips")
    snips, info_snips = estimated_split(log, train, estimator="snips")
    assert info["estimator"] == "ips" and info_snips["estimator"] == "snips"
    logged = ~np.isnan(log.scores)
    # SNIPS: the weights of each model's logged cells sum to n, so its mean is the weighted mean of logged cells
    for j in range(2):
        w = 1.0 / log.meta["propensity"].to_numpy()[logged[:, j]]
        expected = (w * log.scores[logged[:, j], j]).sum() / w.sum()
        assert snips.scores[:, j].mean() == pytest.approx(expected)
    np.testing.assert_allclose(ips.scores[logged], log.scores[logged] / log.meta["propensity"].to_numpy()[
        np.nonzero(logged)[0]])


def test_cli_estimator_switch_is_named_in_the_report(tmp_path, monkeypatch):
    from routecast.cli import app

    monkeypatch.chdir(tmp_path)
    made = traffic_chat_log(tmp_path / "traffic.jsonl", n=240)
    (tmp_path / "prices.json").write_text(json.dumps(made["prices"]), encoding="utf-8")
    runner = CliRunner()
    notes = {}
    for estimator in ("snips", "dr"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = runner.invoke(app, ["train", "-d", "traffic.jsonl", "--price-table", "prices.json", "-r",
                                         "task-prior", "--encoder", HASHING, "-o", f"run-{estimator}",
                                         "--estimator", estimator, "--no-track"])
        assert result.exit_code == 0, result.output
        metrics = json.loads((tmp_path / f"run-{estimator}" / "metrics.json").read_text())
        notes[estimator] = " ".join(metrics["notes"])
    assert "SNIPS estimate from" in notes["snips"] and "DR estimate" not in notes["snips"]
    assert "DR estimate from" in notes["dr"]
    run = json.loads((tmp_path / "run-snips" / "run.json").read_text())
    assert "snips" in json.dumps(run)  # calibrate rebuilds the splits with the same estimator
    calibrated = runner.invoke(app, ["calibrate", "run-snips", "--budget", "0.0003", "--no-track"])
    assert calibrated.exit_code == 0, calibrated.output
    assert "test quality is the SNIPS estimate" in calibrated.output and "95% interval [" in calibrated.output
    test_split = json.loads((tmp_path / "run-snips" / "calibration.json").read_text())["test_split"]
    lo, hi = test_split["quality_ci"]
    assert lo < test_split["quality"] < hi and hi - lo > 0.05
    bad = runner.invoke(app, ["train", "-d", "traffic.jsonl", "-r", "task-prior", "-o", "x", "--estimator", "magic",
                              "--no-track"])
    assert bad.exit_code != 0 and "estimator must be one of dr, dm, ips, snips, got 'magic'" in bad.output


def test_report_interval_on_a_traffic_log_is_the_calibrate_helpers(tmp_path):
    """Every point's interval in the ``evaluate`` report of an estimated test split is
    :func:`policy_interval` of its choices (what ``calibrate`` reports), and the AIQ interval is at
    least as wide as the AIQ through the points' interval ends."""
    from routecast.evaluation import metrics
    from routecast.router.pipeline import prepare
    from routecast.training.experiment import run_experiment

    made = traffic_chat_log(tmp_path / "traffic.jsonl", n=240)
    (tmp_path / "prices.json").write_text(json.dumps(made["prices"]), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(str(tmp_path / "traffic.jsonl"), encoder=HASHING, prices=str(tmp_path / "prices.json"))
        experiment = run_experiment(prepared, ["task-prior"], progress=False)
    assert "test" in prepared.logged
    result = experiment.result
    score, curve = result.routers["task-prior"], result.curves["task-prior"]
    ci = np.asarray(score.meta["quality_ci"])
    assert ci.shape == (curve.n_points, 2)
    for k in (0, curve.n_points // 2, curve.n_points - 1):
        estimate, interval = policy_interval(prepared.logged["test"], prepared.train, curve.choices[k])
        assert tuple(ci[k]) == pytest.approx(interval)
        assert estimate == pytest.approx(curve.quality[k])  # the DR estimate is the curve's quality
        assert ci[k, 1] - ci[k, 0] > 0.02
    low = metrics.aiq(curve.cost, ci[:, 0], *result.cost_range)
    high = metrics.aiq(curve.cost, ci[:, 1], *result.cost_range)
    assert score.aiq_ci[0] <= low < score.aiq < high <= score.aiq_ci[1]
    single = result.models[0]
    _, interval = policy_interval(prepared.logged["test"], prepared.train,
                                  np.zeros(prepared.test.n_prompts, dtype=int))
    assert tuple(result.routers[single].meta["quality_ci"][0]) == pytest.approx(interval)
    assert any("as calibrate's" in note for note in result.notes)


def test_exemplar_weighted_by_logged_propensities_recovers_the_quality():
    """Model a is logged mostly on easy prompts: weighted, its mean (the exemplar router's quality
    where no exemplar matches) is the whole distribution's 0.6, unweighted the logging policy's 0.78;
    on a traffic log only cells that beat the other model's mean become exemplars."""
    weighted = make_router("exemplar", encoder=HASHING).fit(_skewed_traffic())
    unweighted = make_router("exemplar", encoder=HASHING).fit(_skewed_traffic(logged_propensity=False))
    assert abs(weighted.prior_[0] - 0.6) < 0.03
    assert abs(weighted.prior_[0] - 0.6) < abs(unweighted.prior_[0] - 0.6) - 0.1
    assert abs(weighted.prior_[1] - 0.5) < 0.04
    log = _skewed_traffic()
    owners = weighted.exemplar_owner_
    assert set(owners.tolist()) == {0, 1} and (owners == 0).sum() == 50 and (owners == 1).sum() == 50
    # every exemplar is a logged success (1 > the other model's mean), none a logged failure
    picked = make_router("exemplar", encoder=HASHING, n_auto=10_000).fit(log)
    assert (picked.exemplar_owner_ == 0).sum() == int(np.nansum(log.scores[:, 0] == 1.0))
    # the draw follows the weights: a's exemplars lean to hard prompts (weight 1/0.2) more than its logged cells do
    successes = np.flatnonzero(log.scores[:, 0] == 1.0)
    hard = successes % 2 == 1
    assert hard.mean() < 0.1  # the logging policy sent a few hard prompts to a
    drawn = make_router("exemplar", encoder=HASHING, n_auto=200).fit(log)
    E = drawn.exemplar_embeddings_[drawn.exemplar_owner_ == 0]
    from routecast.router.embedding_cache import embed
    from routecast.router.encoders.base import l2_normalise

    emb = l2_normalise(embed(drawn.get_encoder(), [log.prompts[i] for i in successes]))
    rows = np.array([int(np.argmax(emb @ e)) for e in E])
    assert hard[rows].mean() > 0.15  # weighted draw: about a quarter of a's exemplars are hard prompts


def test_exemplar_on_a_complete_log_is_unchanged_by_unit_propensities():
    rng = np.random.default_rng(3)
    n = 300
    scores = (rng.random((n, 3)) < [0.3, 0.6, 0.8]).astype(float)
    args = ([f"p{i}" for i in range(n)], [f"q{i}" for i in range(n)], ("a", "b", "c"), scores, np.tile([1.0, 2.0, 3.0], (n, 1)))
    plain = make_router("exemplar", encoder=HASHING, n_auto=20).fit(OutcomeLog(*args))
    ones = make_router("exemplar", encoder=HASHING, n_auto=20).fit(
        OutcomeLog(*args, meta=pd.DataFrame({"propensity": np.ones(n)})))
    np.testing.assert_array_equal(plain.exemplar_owner_, ones.exemplar_owner_)
    np.testing.assert_array_equal(plain.exemplar_embeddings_, ones.exemplar_embeddings_)
    np.testing.assert_allclose(plain.prior_, ones.prior_)
    np.testing.assert_allclose(plain.prior_, scores.mean(axis=0))


def test_model_selection_of_the_priors_weighs_held_out_cells():
    from routecast.router.group_prior import masked_brier

    predicted = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    scores = np.array([[1.0, np.nan], [0.0, np.nan], [np.nan, 1.0]])
    assert masked_brier(predicted, scores) == pytest.approx(0.25)
    assert masked_brier(predicted, scores, np.ones((3, 2))) == pytest.approx(0.25)
    skewed = np.array([[3.0, np.nan], [1.0, np.nan], [np.nan, 1.0]])
    assert masked_brier(np.array([[0.9, 0.5], [0.9, 0.5], [0.9, 1.0]]), scores, skewed) == pytest.approx(
        (3 * 0.01 + 1 * 0.81 + 0.0) / 5)
    # cluster-prior scores each candidate on its held-out cells weighted by inverse propensity
    from routecast.router.cluster_prior import cluster_table, fit_clusters
    from routecast.router.inner_split import split_validation

    log = _skewed_traffic(n=1200)
    X = np.random.default_rng(0).normal(size=(log.n_prompts, 4)).astype(np.float32)
    router = make_router("cluster-prior", k=1, encoder=HASHING).fit(log, embeddings=X)
    inner, held = split_validation(log.n_prompts, 0.2, 0)
    weights = log.propensity_weights()
    centroids = fit_clusters(X[inner], 1, 0)
    from routecast.router.group_prior import STRENGTH_GRID

    assert sorted(router.selection_) == sorted(f"k=1,shrinkage={s:g}" for s in STRENGTH_GRID)  # every candidate scored
    for key, brier in router.selection_.items():
        strength = float(key.split("shrinkage=")[1])
        table = cluster_table(X[inner], log.scores[inner], centroids, strength, weights[inner], True)
        predicted = np.repeat(table[:1], len(held), axis=0)
        assert brier == pytest.approx(masked_brier(predicted, log.scores[held], weights[held]))
        assert abs(brier - masked_brier(predicted, log.scores[held])) > 1e-4


def test_sw_ranking_on_a_traffic_log_names_the_fix():
    from routecast.core.tags import policy_tags
    from routecast.errors import RoutingError

    cls = type(make_router("sw-ranking"))
    assert policy_tags(cls).needs_shared_prompts  # declared on the class, read by the contract test
    with pytest.raises(RoutingError) as err:
        make_router("sw-ranking", encoder=HASHING).fit(_skewed_traffic(n=200))
    text = str(err.value)
    assert "'sw-ranking' learns from comparisons of two or more models' scores on the same prompt" in text
    assert "routecast collect --fill LOG --budget USD -e endpoints.yaml" in text and "100% of its prompts" in text
    assert "linear, knn, mlp" in text


def test_finetuned_encoder_with_a_contrastive_objective_refuses_a_traffic_log():
    pytest.importorskip("torch")
    from routecast.errors import RoutingError

    with pytest.raises(RoutingError) as err:
        make_router("finetuned-encoder", base_model="tiny", objective="routerdc").fit(_skewed_traffic(n=100))
    text = str(err.value)
    assert "objective='routerdc'; objective='masked' fits the logged cells alone" in text
    assert "routecast collect --fill LOG" in text
