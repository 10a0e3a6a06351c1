"""The better prior is chosen on validation, never on test (routecast.evaluation.priors).

On a hand-made log the prior with the better TEST AIQ loses the choice when validation says
otherwise, and every learned policy's ``gain_over_prior`` follows the validation choice. On a real
slice, ``run_experiment`` scores the priors on validation itself, shows ``task-prior (logged task)``
(the dataset oracle) next to the classifier form, and the report says which prior and why.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from routecast.evaluation.evaluate import aiq_difference, evaluate, sweep_router
from routecast.evaluation.priors import (LOGGED_TASK_PRIOR, LoggedTaskQuality, choose_prior,
                                                validation_aiq)
from tests._support.routers import LookupRouter
from tests.training.test_evaluate import ConstantRouter, make_log

HASHING = "hashing:dim=256"


def _curves():
    """cluster-prior: prompt-blind (the worse prior on test); task-prior: the oracle relabelled a2
    (the better prior on test); learned: the oracle as a1."""
    log = make_log()
    blind = sweep_router(ConstantRouter().fit(log), log, label="cluster-prior")
    table = sweep_router(LookupRouter().fit(log), log, label="task-prior")
    table.family = "a2"
    learned = sweep_router(LookupRouter().fit(log), log, label="learned")
    learned.family = "a1"
    return log, {"cluster-prior": blind, "task-prior": table, "learned": learned}


def test_the_prior_with_the_better_validation_aiq_is_chosen_even_when_it_is_worse_on_test():
    log, curves = _curves()
    by_test = evaluate(curves, log, n_boot=20, prior_val_aiq={"cluster-prior": 0.1, "task-prior": 0.9})
    assert by_test.routers["task-prior"].aiq > by_test.routers["cluster-prior"].aiq
    assert by_test.routers["learned"].prior == "task-prior"
    assert by_test.routers["learned"].gain_over_prior == pytest.approx(0.0)

    res = evaluate(curves, log, n_boot=20, prior_val_aiq={"cluster-prior": 0.9, "task-prior": 0.1})
    score = res.routers["learned"]
    assert score.prior == "cluster-prior"
    gap = res.routers["learned"].aiq - res.routers["cluster-prior"].aiq
    assert gap > 0.1 and score.gain_over_prior == pytest.approx(gap)
    assert score.gain_over_prior_ci == aiq_difference(res, "learned", "cluster-prior")[1]
    assert res.prior_choice == {"prior": "cluster-prior", "by": "validation AIQ",
                                "validation_aiq": {"cluster-prior": 0.9, "task-prior": 0.1}}
    assert res.to_dict()["prior_choice"]["prior"] == "cluster-prior"
    assert res.routers["cluster-prior"].gain_over_prior is None  # priors get no gain over themselves


def test_without_validation_aiq_no_gain_is_reported_and_a_note_says_why():
    log, curves = _curves()
    res = evaluate(curves, log, n_boot=5)
    assert res.routers["learned"].gain_over_prior is None and res.routers["learned"].prior is None
    assert res.prior_choice == {}
    assert any("chosen by validation AIQ" in note for note in res.notes)


def test_choose_prior_skips_missing_scores_and_breaks_ties_by_the_prior_order():
    assert choose_prior({"task-prior": 0.5, "cluster-prior": 0.5}) == "cluster-prior"
    assert choose_prior({LOGGED_TASK_PRIOR: 0.6, "task-prior": 0.5, "cluster-prior": float("nan")}) == LOGGED_TASK_PRIOR
    assert choose_prior({"cluster-prior": None, "task-prior": float("nan")}) is None
    assert choose_prior({}) is None


@pytest.fixture(scope="module")
def experiment():
    from routecast.router.pipeline import prepare
    from routecast.training.experiment import run_experiment

    prepared = prepare("llmrouter_9models", encoder=HASHING, limit=500, seed=2)
    return run_experiment(prepared, ["linear", "cluster-prior", "task-prior"], n_boot=50, progress=False)


def test_run_experiment_chooses_the_prior_by_its_own_validation_scores(experiment):
    result, prepared = experiment.result, experiment.prepared
    choice = result.prior_choice
    assert set(choice["validation_aiq"]) == {"cluster-prior", "task-prior", LOGGED_TASK_PRIOR}
    # the same numbers, measured independently on the validation split
    val_emb = prepared.embeddings("val")
    cluster, task = experiment.runs["cluster-prior"].router, experiment.runs["task-prior"].router
    expected = {"cluster-prior": validation_aiq(cluster, prepared.val, embeddings=val_emb),
                "task-prior": validation_aiq(task, prepared.val, embeddings=val_emb),
                LOGGED_TASK_PRIOR: validation_aiq(LoggedTaskQuality(task, prepared.val), prepared.val,
                                                  embeddings=val_emb)}
    assert choice["validation_aiq"] == pytest.approx(expected)
    assert choice["prior"] == max(expected, key=expected.get)
    linear = result.routers["linear"]
    assert linear.prior == choice["prior"]
    assert linear.gain_over_prior == pytest.approx(linear.aiq - result.routers[choice["prior"]].aiq)


def test_evaluate_shows_the_logged_task_prior_next_to_the_classifier(experiment, tmp_path):
    from routecast.evaluation.report import write_report

    result, prepared = experiment.result, experiment.prepared
    logged = result.routers[LOGGED_TASK_PRIOR]
    assert logged.family == "a2" and logged.status == "curve"
    # the logged form predicts each test prompt's own benchmark row of the table
    task = experiment.runs["task-prior"].router
    q = LoggedTaskQuality(task, prepared.test).predict_quality(list(prepared.test.prompts))
    index = [task.tasks_.index(str(b)) for b in prepared.test.meta["benchmark"]]
    np.testing.assert_allclose(q, task.table_[index])
    assert not np.allclose(q, task.predict_quality(list(prepared.test.prompts)))  # the classifier errs somewhere
    report = write_report(result, tmp_path, title="t").read_text()
    assert f"| {LOGGED_TASK_PRIOR} |" in report and "| task-prior |" in report
    assert f"Better prior: **{result.prior_choice['prior']}**, chosen by validation AIQ" in report
    assert math.isfinite(result.routers["linear"].gain_over_prior)
