"""The trust gaps a hostile probe found (issue 26), each reproduced and its fix asserted: feedback
across keys, backend-reported usage that rewrote spend, a cascade answer that was lost, breaker
fallbacks that went unreported, unbounded conversation ids and echoed request ids.

Every case runs on loopback: TestClient or the official ``openai`` client against a real uvicorn
server, fake OpenAI-compatible backends on 127.0.0.1 (tests/_support/fake_backend.py).
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from routecast.data.decision_log import DecisionLog
from routecast.serving.app import create_app
from tests._support.fake_backend import FakeBackend
from tests._support.serving import backends_for, make_checkpoint

KEY_A, KEY_B, ADMIN = "rc-alice-0123456789abcdef", "rc-bob-0123456789abcdefgh", "rc-admin-0123456789abcdef"
AUTH_A, AUTH_B, AUTH_ADMIN = ({"authorization": f"Bearer {k}"} for k in (KEY_A, KEY_B, ADMIN))
MATH = "Solve for x: 3x + 4 = 10"  # routed to 'large' (expected cost 0.01) at lam=0
MODELS = ("small", "medium", "large")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("probe") / "ck")


@pytest.fixture
def backend():
    b = FakeBackend("B")
    yield b
    b.stop()


def _chat(client, headers=None, content=MATH, **extra):
    return client.post("/v1/chat/completions", headers=headers or {},
                       json={"model": "router", "messages": [{"role": "user", "content": content}], **extra})


# ----------------------------------------------------------------------------- 1. feedback across keys
def test_feedback_only_from_the_key_that_made_the_request_or_an_admin(ckpt, backend, tmp_path):
    log = tmp_path / "decisions.sqlite"
    app = create_app(ckpt, decision_log=log, backends=backends_for({m: backend for m in MODELS}),
                     api_keys=[KEY_A, KEY_B], admin_keys=[ADMIN])
    with TestClient(app) as client:
        rid = _chat(client, AUTH_A).headers["x-routecast-request-id"]
        other = _chat(client, AUTH_B).headers["x-routecast-request-id"]
        stolen = client.post("/v1/feedback", json={"request_id": rid, "score": 0}, headers=AUTH_B)
        assert stolen.status_code == 403, stolen.text
        assert stolen.json()["error"]["code"] == "not_your_request"
        # the owner's one feedback slot is still free
        own = client.post("/v1/feedback", json={"request_id": rid, "score": 1}, headers=AUTH_A)
        assert own.status_code == 200 and own.json()["status"] == "recorded", own.text
        # an admin key may score anyone's request; it is a client key too
        assert client.post("/v1/feedback", json={"request_id": other, "score": 0.5},
                           headers=AUTH_ADMIN).status_code == 200
        assert _chat(client, AUTH_ADMIN).status_code == 200
    scores = {r["request_id"]: r["score"] for r in DecisionLog(log).records()}
    assert scores[rid] == 1.0 and scores[other] == 0.5


def test_admin_keys_file_is_a_serve_option(ckpt, tmp_path):
    from routecast.serving.serve import build_server

    keys, admins = tmp_path / "keys.txt", tmp_path / "admins.txt"
    keys.write_text(KEY_A + "\n")
    admins.write_text(ADMIN + "\n")
    app, _ = build_server(ckpt, {"api_keys": str(keys), "admin_keys": str(admins)})
    assert len(app.state.admin_key_ids) == 1
    with TestClient(app) as client:
        assert client.get("/v1/models", headers=AUTH_ADMIN).status_code == 200
        assert client.get("/v1/models", headers=AUTH_B).status_code == 401
