"""Which cascade kinds a log supports (and why not), the Smoothie selector, and the cascade
command's load path (the one prepare() path with its defaults)."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.cascade.kinds import CASCADE_KINDS, cascade_support, parse_kinds
from routecast.cascade.smoothie import agreement_weights, smoothie_select
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import ConfigError
from routecast.core.policy import RoutecastWarning


def tiny(responses):
    n = 3 if responses is None else len(responses)
    return OutcomeLog(np.array([f"p{i}" for i in range(n)], dtype=object),
                      np.array([f"prompt {i}" for i in range(n)], dtype=object), ("a", "b", "c"),
                      np.array([[1.0, 0.0, 1.0]] * n), np.tile([1.0, 2.0, 4.0], (n, 1)),
                      None if responses is None else np.array(responses, dtype=object), source="tiny.parquet")


def test_all_kinds_run_when_every_response_is_logged():
    support = cascade_support(tiny([["x 1", "y 2", "x 1"]] * 3), "all", warn=False)
    assert support.runnable == list(CASCADE_KINDS) and support.skipped == {}


def test_a_log_without_responses_lists_what_cannot_run_and_warns():
    with pytest.warns(RoutecastWarning, match="no responses logged in tiny.parquet: cascade routing uses ex-ante"):
        support = cascade_support(tiny(None), "all")
    assert support.runnable == ["ex-ante", "cascade-routing", "oracle-ensemble"]
    assert set(support.skipped) == {"ex-post", "agreement", "agreement-escalation", "smoothie", "majority-vote",
                                    "best-of-n"}
    assert support.skipped["ex-post"].startswith("no responses logged: ex-post and agreement cascades")
    assert "response column" in support.skipped["agreement"]


def test_partial_responses_name_the_model_and_count():
    support = cascade_support(tiny([["x", None, "z"], ["x", "y", "z"]]), "ex-post,cascade-routing", warn=False)
    assert support.runnable == ["cascade-routing"]
    assert "b (1 of 2)" in support.skipped["ex-post"]
    assert any("model 'b' has no response on 1 of 2 prompts" in w for w in support.warnings)


def test_unknown_kind_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="bogus"):
        parse_kinds("ex-ante,bogus")
    assert parse_kinds("all") == list(CASCADE_KINDS)


def test_agreement_weights_favour_the_central_answer():
    sims = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    w = agreement_weights(sims, np.array([True, True, True]))
    np.testing.assert_allclose(w, [0.5, 0.55, 0.15])
    np.testing.assert_allclose(agreement_weights(sims, np.array([True, False, False])), [0.0, 0.0, 0.0])


def test_smoothie_picks_a_response_the_others_agree_with():
    same = "The capital of France is Paris, a city on the Seine."
    log = tiny([[same, "Bananas are yellow fruit rich in potassium.", same + " Indeed."]] * 4)
    result = smoothie_select(log, encoder="hashing:dim=256")
    assert set(result.choice.tolist()) <= {0, 2}
    np.testing.assert_allclose(result.cost, 7.0)
    np.testing.assert_allclose(result.quality, 1.0)


def test_cascade_command_uses_the_shared_prepare_path():
    import routecast.cascade.evaluation as evaluation
    from routecast.router.pipeline import prepare

    assert not hasattr(evaluation, "load_and_split")
    a = evaluation.prepare_priced("routellm_strong_weak", encoder="hashing:dim=64", limit=300)
    b = prepare("routellm_strong_weak", encoder="hashing:dim=64", limit=300)
    for split in ("train", "val", "test"):
        assert list(getattr(a, split).prompt_ids) == list(getattr(b, split).prompt_ids)
    assert (a.settings["val"], a.settings["test"]) == (0.1, 0.2)


def test_cascades_all_runs_what_the_log_supports_and_lists_the_rest():
    from routecast.cascade.suite import cascade_curves
    from routecast.router.pipeline import prepare

    prepared = prepare("routellm_strong_weak", encoder="hashing:dim=64", limit=300)
    with pytest.warns(RoutecastWarning, match="has no response on"):
        curves, skipped = cascade_curves(prepared, "all", scorer_encoder="hashing:dim=64")
    assert set(curves) == {"cascade (ex-ante)", "cascade (cascade-routing)", "oracle-ensemble"}
    assert set(skipped) == {"ex-post", "agreement", "agreement-escalation", "smoothie", "majority-vote", "best-of-n"}
    assert skipped.pop("agreement-escalation").endswith("needs three (two to agree, a stronger one to escalate to)")
    assert all("responses missing for" in reason for reason in skipped.values())
    n_test = prepared.test.complete().n_prompts
    assert all(c.n_prompts == n_test for c in curves.values())  # no prompt dropped by any kind
