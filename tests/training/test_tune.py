"""Tuning: optuna over a router's declared search space, on the validation split only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routecast.errors import ConfigError
from routecast.router.pipeline import Prepared
from routecast.training.tune import (TestSplitAccessError, TuningView, load_router_config, measure,
                                     save_router_config, tune)
from routecast.evaluation.evaluate import single_model_cost_range

HASHING = "hashing:dim=256"


class GuardedPrepared:
    """A prepared dataset whose test split (and whole log) explode when touched."""

    def __init__(self, prepared: Prepared):
        self._p = prepared
        self.train, self.val = prepared.train, prepared.val
        self.encoder, self.settings = prepared.encoder, prepared.settings
        self.touched: list[str] = []

    @property
    def test(self):
        self.touched.append("test")
        raise AssertionError("tuning read the test split")

    @property
    def log(self):
        self.touched.append("log")
        raise AssertionError("tuning read the whole log")

    def split(self, name):
        if name not in ("train", "val"):
            self.touched.append(name)
            raise AssertionError(f"tuning read split {name}")
        return getattr(self, name)

    def embeddings(self, name):
        if name not in ("train", "val"):
            self.touched.append(f"embeddings:{name}")
            raise AssertionError(f"tuning embedded split {name}")
        return self._p.embeddings(name)

    def get_encoder(self):
        return self._p.get_encoder()


@pytest.fixture(scope="module")
def prepared(small_log):
    """small_log (360 real prompts, 9 models) split 220 train / 70 val / 70 test."""
    idx = np.arange(small_log.n_prompts)
    return Prepared(log=small_log, train=small_log.subset(idx[:220]), val=small_log.subset(idx[220:290]),
                    test=small_log.subset(idx[290:]), encoder=HASHING,
                    settings={"data": "llmrouter_9models[small]", "encoder": HASHING, "seed": 7})


def test_tune_knn_resumes_from_sqlite_without_repeating_trials(prepared, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    first = tune(prepared, "knn", n_trials=3, storage=storage, study_name="knn-aiq", seed=0)
    assert (first.n_trials_run, first.n_trials_total) == (3, 3)
    # trial 0 is the router's defaults, so tuning never ends below them on validation
    assert first.trials[0]["params"] == {"k": 20, "weighting": "uniform"} and first.trials[0]["default"]
    assert first.best_value >= first.default_value
    assert first.best_value == max(t["value"] for t in first.trials)

    again = tune(prepared, "knn", n_trials=3, storage=storage, study_name="knn-aiq", seed=0)
    assert again.n_trials_run == 0 and again.best_value == first.best_value

    more = tune(prepared, "knn", n_trials=5, storage=storage, study_name="knn-aiq", seed=0)
    assert (more.n_trials_run, more.n_trials_total) == (2, 5)
    study = optuna.load_study(study_name="knn-aiq", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    # the three first trials are the very same records, not re-runs
    assert [t.params for t in study.trials[:3]] == [t["params"] for t in first.trials]


def test_tune_never_reads_the_test_split_and_value_is_the_validation_aiq(prepared):
    guarded = GuardedPrepared(prepared)
    result = tune(guarded, "knn", n_trials=2, seed=1)
    assert guarded.touched == []
    view = TuningView(prepared)
    with pytest.raises(TestSplitAccessError):
        view.test
    with pytest.raises(TestSplitAccessError):
        view.embeddings("test")
    with pytest.raises(TestSplitAccessError):
        view.split("all")
    # the study's value is exactly the validation AIQ of the best configuration refitted
    from routecast.router.pipeline import fit_router

    router, _ = fit_router("knn", result.best_params, view)
    value, details = measure(router, view, "aiq", cost_range=single_model_cost_range(prepared.val))
    assert value == pytest.approx(result.best_value, abs=1e-12)
    assert 0.0 < value <= details["max_quality"] <= 1.0


def test_budget_and_target_objectives(prepared):
    lo, hi = single_model_cost_range(prepared.val)
    budget = lo + 0.3 * (hi - lo)
    res = tune(prepared, "knn", n_trials=2, objective="quality@budget", budget=budget)
    assert res.direction == "maximize"
    assert 0.0 < res.best_value <= 1.0
    res = tune(prepared, "knn", n_trials=2, objective="cost@quality", target=0.3)
    assert res.direction == "minimize"
    assert lo - 1e-12 <= res.best_value <= hi + 1e-12  # 0.3 is reachable: a real cost, not the penalty
    with pytest.raises(ConfigError, match="below the cheapest"):
        tune(prepared, "knn", n_trials=1, objective="quality@budget", budget=lo / 10)
    with pytest.raises(ConfigError, match="needs target"):
        tune(prepared, "knn", n_trials=1, objective="cost@quality")
    with pytest.raises(ConfigError, match="unknown objective"):
        tune(prepared, "knn", n_trials=1, objective="accuracy")
    with pytest.raises(ConfigError, match="evaluation-only"):
        tune(prepared, "oracle", n_trials=1)


def test_resuming_a_study_with_another_objective_is_refused(prepared, tmp_path):
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    tune(prepared, "knn", n_trials=1, storage=storage, study_name="s")
    with pytest.raises(ConfigError, match="was created"):
        tune(prepared, "knn", n_trials=2, storage=storage, study_name="s", objective="cost@quality", target=0.3)


def test_best_config_round_trips_and_bad_configs_name_file_and_key(prepared, tmp_path):
    result = tune(prepared, "knn", n_trials=2)
    path = save_router_config(tmp_path / "best_config.json", result)
    name, params = load_router_config(path)
    assert (name, params) == ("knn", result.best_params)
    assert json.loads(path.read_text())["tuning"]["objective"] == "aiq"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"router": "knn", "params": {"k": 5, "kk": 3}}))
    with pytest.raises(ConfigError) as err:
        load_router_config(bad)
    assert str(bad) in str(err.value) and "params.kk" in str(err.value)

    bad.write_text(json.dumps({"router": "knnn", "params": {}}))
    with pytest.raises(ConfigError, match="key 'router'.*unknown router 'knnn'"):
        load_router_config(bad)
    bad.write_text('{"router": "knn",\n "params": {')
    with pytest.raises(ConfigError, match="line 2"):
        load_router_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_router_config(tmp_path / "missing.json")


def test_tune_cli_writes_best_config(tmp_path):
    from typer.testing import CliRunner

    from routecast.cli import app

    out = tmp_path / "tune"
    result = CliRunner().invoke(app, ["tune", "--data", "llmrouter_9models", "--router", "knn", "--trials", "2",
                                      "--encoder", HASHING, "--limit", "300", "--out", str(out), "--no-track"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    config = json.loads((out / "best_config.json").read_text())
    assert config["router"] == "knn" and set(config["params"]) == {"k", "weighting"}
    assert "best aiq" in result.output
    summary = json.loads((out / "tune.json").read_text())
    assert summary["n_trials_total"] == 2 and len(summary["trials"]) == 2
    # resumable by default: the sqlite study holds the same two trials and best value
    import optuna

    study = optuna.load_study(study_name=summary["study_name"], storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 2 and study.best_value == pytest.approx(summary["best_value"])
    assert config["tuning"]["value"] == pytest.approx(summary["best_value"])


@pytest.mark.slow
def test_tune_mlp_with_pruning_callback(prepared):
    result = tune(prepared, "mlp", n_trials=2, fixed_params={"max_epochs": 3, "patience": 2}, seed=0)
    assert result.n_trials_total == 2
    assert result.best_params["max_epochs"] == 3
    # the pruning callback reported the internal val_loss of every epoch to optuna
    assert all(1 <= t["n_reports"] <= 3 for t in result.trials)
    assert set(result.best_params) >= {"hidden_dim", "lr", "dropout"}
    assert 0.0 < result.best_value <= 1.0


def test_pruner_treats_intermediate_values_as_losses_in_a_maximising_study():
    import optuna

    from routecast.training.tune import loss_median_pruner

    study = optuna.create_study(direction="maximize", pruner=loss_median_pruner(n_startup_trials=2, n_warmup_steps=0))
    for loss in (0.5, 0.6):  # two finished trials with these epoch-0 losses
        trial = study.ask()
        trial.report(loss, step=0)
        study.tell(trial, 0.7)
    bad = study.ask()
    bad.report(0.9, step=0)  # a worse (higher) loss than the median: prune
    assert bad.should_prune()
    good = study.ask()
    good.report(0.3, step=0)  # a better loss: keep training, although 0.3 < the median
    assert not good.should_prune()
