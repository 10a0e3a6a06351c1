"""Canary rollout (``serve --canary CKPT --canary-share S``, routecast.serving.canary): a hashed
share of first turns goes to the candidate, conversations stay on their arm, the arm is logged,
``routecast rollout status`` compares the arms, promote / rollback are one admin call each."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from routecast.cli import app as cli
from routecast.core.checkpoint.files import manifest_sha256
from routecast.data.decision_log import DecisionLog
from routecast.data.outcome_log import OutcomeLog
from routecast.evaluation.rollout import arm_comparison
from routecast.serving.app import create_app
from routecast.serving.canary import Canary
from routecast.serving.loading import load_runtime
from tests._support.serving import TinyRouter, backends_for, make_checkpoint, synthetic_log

ADMIN, CLIENT = "admin-key-123456", "client-key-123456"
AUTH_ADMIN, AUTH_CLIENT = ({"authorization": f"Bearer {k}"} for k in (ADMIN, CLIENT))
RENAMED = ("s2", "m2", "l2")
SHARE = 0.3


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("canary")
    live = make_checkpoint(root / "live")
    log = synthetic_log()
    renamed = OutcomeLog(prompt_ids=log.prompt_ids, prompts=log.prompts, models=RENAMED, scores=log.scores,
                         costs=log.costs, source="<renamed>")
    return live, make_checkpoint(root / "canary", TinyRouter().fit(renamed))


def _chat(client, text, conversation=None):
    headers = {**AUTH_CLIENT, **({"x-routecast-conversation": conversation} if conversation else {})}
    r = client.post("/v1/chat/completions", headers=headers,
                    json={"model": "router", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r


def test_a_hashed_share_goes_to_the_canary_and_conversations_keep_their_arm(pair, backend, tmp_path):
    live, candidate = pair
    log_path = tmp_path / "d.sqlite"
    app = create_app(live, {"canary_share": SHARE}, backends=backends_for({"*": backend}), api_keys=[CLIENT],
                     admin_keys=[ADMIN], decision_log=log_path, canary=candidate)
    draw = Canary(load_runtime(candidate), SHARE).draw
    with TestClient(app) as client:
        first = {}
        for i in range(200):
            r = _chat(client, f"Solve {i} + x = 3")
            rid = r.headers["x-routecast-request-id"]
            expected = "canary" if draw(rid) == "canary" else "live"
            assert (r.headers["x-routecast-model"] in RENAMED) == (expected == "canary")
            first[rid] = expected
        share = sum(a == "canary" for a in first.values()) / len(first)
        assert 0.2 < share < 0.4
        # a conversation's later turns stay on the arm of its first turn
        for c in range(20):
            arms = {_chat(client, f"turn {t} of {c}", conversation=f"conv-{c}").headers["x-routecast-model"] in RENAMED
                    for t in range(3)}
            assert len(arms) == 1
        status = client.get("/admin/status", headers=AUTH_ADMIN).json()
        assert status["canary"] == {"id": manifest_sha256(candidate), "router_type": "test-tiny",
                                    "models": list(RENAMED), "share": SHARE}
    with DecisionLog(log_path) as log:
        rows = {r["request_id"]: r for r in log.records()}
    for rid, arm in first.items():
        extra = rows[rid]["extra"]
        assert extra["arm"] == arm
        assert extra["arm_propensity"] == pytest.approx(SHARE if arm == "canary" else 1 - SHARE)
        assert extra["checkpoint"] == manifest_sha256(candidate if arm == "canary" else live)


def test_rollout_status_compares_the_arms_from_feedback(pair, backend, tmp_path):
    live, candidate = pair
    log_path = tmp_path / "d.sqlite"
    app = create_app(live, {"canary_share": 0.5}, backends=backends_for({"*": backend}), decision_log=log_path,
                     canary=candidate)
    with TestClient(app) as client:
        for i in range(120):
            r = client.post("/v1/chat/completions", json={"model": "router",
                                                          "messages": [{"role": "user", "content": f"hi {i}"}]})
            score = 1.0 if r.headers["x-routecast-model"] in RENAMED else 0.25  # the canary answers better
            client.post("/v1/feedback", json={"request_id": r.headers["x-routecast-request-id"], "score": score})
    result = arm_comparison(log_path, n_boot=200)
    assert result["n_scored"] == 120 and result["live"]["n"] + result["canary"]["n"] == 120
    assert result["canary"]["quality"]["value"] == 1.0 and result["live"]["quality"]["value"] == 0.25
    diff = result["difference"]["quality"]
    assert diff["value"] == pytest.approx(0.75) and diff["ci"][0] > 0
    qpd = result["canary"]["quality_per_usd"]
    assert qpd["value"] == pytest.approx(1.0 / result["canary"]["cost"]["value"])
    assert qpd["ci"][0] <= qpd["value"] <= qpd["ci"][1]
    out = CliRunner().invoke(cli, ["rollout", "status", str(log_path), "--n-boot", "50"])
    assert out.exit_code == 0, out.output
    assert "| canary | " in out.output and "| canary - live |" in out.output


def test_promote_and_rollback_are_one_admin_call_each(pair, backend):
    live, candidate = pair

    def server():
        return TestClient(create_app(live, {"canary_share": SHARE}, backends=backends_for({"*": backend}),
                                     api_keys=[CLIENT], admin_keys=[ADMIN], canary=candidate))

    with server() as client:
        assert client.post("/admin/promote", headers=AUTH_CLIENT).status_code == 403
        promoted = client.post("/admin/promote", headers=AUTH_ADMIN).json()
        assert (promoted["from"], promoted["to"]) == (manifest_sha256(live), manifest_sha256(candidate))
        assert all(_chat(client, f"q {i}").headers["x-routecast-model"] in RENAMED for i in range(20))
        status = client.get("/admin/status", headers=AUTH_ADMIN).json()
        assert status["canary"] is None and status["checkpoint"]["id"] == manifest_sha256(candidate)
        again = client.post("/admin/rollback", headers=AUTH_ADMIN)
        assert again.status_code == 409 and again.json()["error"]["code"] == "no_canary"
    with server() as client:
        rolled = client.post("/admin/rollback", headers=AUTH_ADMIN).json()
        assert rolled["to"] == manifest_sha256(live) and rolled["candidate"] == manifest_sha256(candidate)
        assert not any(_chat(client, f"q {i}").headers["x-routecast-model"] in RENAMED for i in range(20))
        assert [c["event"] for c in client.get("/admin/status", headers=AUTH_ADMIN).json()["changes"]] == \
            ["rolled back"]
