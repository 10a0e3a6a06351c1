"""Budget pacing (routecast.core.pacing.BudgetPacer, ``serve --pace-budget``): a small drift
simulation of the controller, and the server pacing its requests beside per-key budgets."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from routecast.core.pacing import BudgetPacer
from routecast.core.policy import decide
from routecast.errors import ConfigError
from routecast.serving.app import create_app
from routecast.serving.server_config import ServerSettings
from tests._support.serving import COSTS, backends_for, make_checkpoint

BUDGET = 4e-4


def _simulate(lam_of, observe=None, n=8000, seed=0):
    """Realised cost per request of three models at the lam ``lam_of(t)`` gives; the prompts get
    twice as long (and dear) from the middle on."""
    rng = np.random.default_rng(seed)
    quality = np.clip(rng.normal([0.4, 0.6, 0.8], 0.15, size=(n, 3)), 0, 1)
    length = np.where(np.arange(n) < n // 2, 1.0, 2.0) * rng.uniform(0.7, 1.3, n)
    expected = np.asarray(COSTS)
    spent = np.empty(n)
    for t in range(n):
        j = int(decide(quality[t: t + 1], expected, lam_of(t))[0])
        spent[t] = expected[j] * length[t]
        if observe is not None:
            observe(spent[t])
    return spent


def _windows(spent, window=500, warmup=1000):
    return np.array([spent[s: s + window].mean() / BUDGET - 1 for s in range(warmup, len(spent), window)])


def test_the_controller_holds_every_window_at_the_budget_under_drift():
    pacer = BudgetPacer.for_costs(BUDGET, COSTS).start()
    lams = []

    def lam_of(t):
        lams.append(pacer.lam_)
        return pacer.lam_

    paced = _windows(_simulate(lam_of, pacer.observe))
    assert np.abs(paced).max() <= 0.05, paced
    # the lam that met the budget before the drift overspends after it, by far
    before = lams[3999]
    static = _windows(_simulate(lambda t: before))
    assert np.abs(static[:6]).max() < 0.15 and static[-4:].min() > 0.3, static
    assert lams[-1] > before  # the pacer paid less per quality point after the drift
    state = pacer.state()
    assert state["requests"] == 8000 and pacer.lam_min <= state["lam"] <= pacer.lam_max
    assert state["window_mean_cost"] == pytest.approx(BUDGET, rel=0.05)


def test_the_controller_stays_in_its_bounds_and_ignores_unknown_costs():
    pacer = BudgetPacer(1e-3, lam=10.0, lam_min=1.0, lam_max=100.0, step=0.5).start()
    for _ in range(100):
        pacer.observe(1.0)  # far over budget: lam climbs to its bound, never past it
    assert pacer.lam_ == 100.0
    assert pacer.observe(None) == 100.0 and pacer.observe(float("nan")) == 100.0 and pacer.n_ == 100
    for _ in range(100):
        pacer.observe(0.0)
    assert pacer.lam_ == 1.0
    with pytest.raises(ConfigError, match="step"):
        BudgetPacer(1e-3, lam=1.0, lam_min=1.0, lam_max=2.0, step=0).start()
    with pytest.raises(ConfigError, match="different expected costs"):
        BudgetPacer.for_costs(1e-3, [1e-3, 1e-3])


def test_pacing_conflicts_with_a_default_lam():
    with pytest.raises(ConfigError, match="pace_budget_usd"):
        ServerSettings.from_any({"pace_budget_usd": 1e-3, "default_lam": 5.0})


def test_the_server_paces_requests_without_knobs_beside_per_key_budgets(tmp_path, backend):
    ckpt = make_checkpoint(tmp_path / "ck")
    settings = {"pace_budget_usd": 0.0005, "spend_budget_usd": 0.02}
    app = create_app(ckpt, settings, backends=backends_for({"*": backend}), api_keys=["client-key-000001", "client-key-000002"],
                     admin_keys=["admin-key-0000001"])
    admin = {"authorization": "Bearer admin-key-0000001"}
    with TestClient(app) as client:
        start = client.get("/admin/status", headers=admin).json()["pacing"]
        assert start["budget"] == 0.0005 and start["requests"] == 0
        decisions = []
        for i in range(60):
            r = client.post("/v1/route", json={"prompt": f"Solve for x: {i}x + 3 = 7"},
                            headers={"authorization": "Bearer client-key-000001"})
            decisions.append(r.json()["decisions"][0])
        assert decisions[0]["lam"] == pytest.approx(start["lam"])
        for before, after in zip(decisions, decisions[1:]):  # each request's spend moved the next one's lam
            error = min(max(before["expected_cost"] / 0.0005 - 1, -1), 10)
            assert after["lam"] == pytest.approx(min(max(before["lam"] * np.exp(0.05 * error), start["lam_min"]),
                                                     start["lam_max"]))
        assert decisions[-1]["lam"] != decisions[0]["lam"]
        explicit = client.post("/v1/route", json={"prompt": "Solve for x: 2x = 4", "lam": 0.0},
                               headers={"authorization": "Bearer client-key-000001"}).json()["decisions"][0]
        assert explicit["lam"] == 0.0  # a request's own knob wins
        paced = client.get("/admin/status", headers=admin).json()["pacing"]
        assert paced["requests"] == 61 and paced["lam"] < start["lam"] and paced["last_log_step"] != 0
        # the per-key spend budget still refuses a key that used it up
        codes = [client.post("/v1/chat/completions", headers={"authorization": "Bearer client-key-000002"},
                             json={"model": "large", "messages": [{"role": "user", "content": "hi"}]}).status_code
                 for _ in range(4)]
        assert codes[:2] == [200, 200] and codes[-1] == 429
        assert client.get("/admin/status", headers=admin).json()["pacing"]["requests"] == 61 + 2
