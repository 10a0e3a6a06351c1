"""Operating points chosen per request (model name, headers, body field), unknown knobs refused and
never forwarded, transparency headers and usage cost, the chat routing text and sticky routing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from routecast.serving.app import create_app
from tests._support.serving import backends_for, fitted_knn, make_checkpoint, serving

MATH = "Solve for x: 3x + 4 = 10"
CHAT = "Say hello to Bo in a cheerful way"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    router = fitted_knn()
    router.add_operating_point("quality", {"lam": 0.0}, make_default=False)
    router.add_operating_point("cheap", {"lam": 1e6})  # the checkpoint's default
    return make_checkpoint(tmp_path_factory.mktemp("points") / "ck", router)


def _app(ckpt, backend, **settings):
    return create_app(ckpt, settings or None, backends=backends_for({"small": backend, "medium": backend,
                                                                     "large": backend}),
                      price_table={"small": [1.0, 2.0], "medium": [10.0, 20.0], "large": [100.0, 200.0]})


def _chat(client, content, model="router", headers=None, **extra):
    return client.post("/v1/chat/completions", headers=headers or {},
                       json={"model": model, "messages": [{"role": "user", "content": content}], **extra})


def test_operating_point_by_model_name_header_body_and_default(ckpt, backend):
    with TestClient(_app(ckpt, backend)) as client:
        r = _chat(client, MATH)  # the checkpoint's default point: lam 1e6, cheapest
        assert r.status_code == 200, r.text
        assert (r.headers["x-routecast-model"], r.headers["x-routecast-operating-point"]) == ("small", "cheap")
        r = _chat(client, MATH, model="router:quality")
        assert (r.headers["x-routecast-model"], r.headers["x-routecast-operating-point"]) == ("large", "quality")
        r = _chat(client, MATH, model="auto", headers={"x-routecast-operating-point": "quality"})
        assert r.headers["x-routecast-model"] == "large"
        r = _chat(client, MATH, headers={"x-routecast-lam": "30"})
        assert r.headers["x-routecast-model"] == "large" and r.headers["x-routecast-lam"] == "30"
        assert "x-routecast-operating-point" not in r.headers
        r = _chat(client, MATH, routecast={"operating_point": "quality"})
        assert r.headers["x-routecast-model"] == "large"
        r = client.post("/v1/route", json={"prompt": MATH}, headers={"x-routecast-operating-point": "quality"})
        d = r.json()["decisions"][0]
        assert (d["model"], d["operating_point"], d["lam"], d["fallback"]) == ("large", "quality", 0.0, None)
        assert d["request_id"] == r.json()["request_id"] == r.headers["x-routecast-request-id"]
        assert d["rank"] == 1 and d["predicted_quality"]["large"] == pytest.approx(1.0)
    with TestClient(_app(ckpt, backend, default_operating_point="quality")) as client:
        assert _chat(client, MATH).headers["x-routecast-model"] == "large"  # the server config wins


@pytest.mark.parametrize("kwargs, message", [
    ({"headers": {"x-routecast-budjet": "0.1"}}, "unknown routecast header 'x-routecast-budjet'"),
    ({"budget": 0.001}, "routing knob(s) budget at the top level"),
    ({"lam": 3}, "routing knob(s) lam at the top level"),
    ({"routecast": {"bugdet": 1}}, "unknown routecast field(s) routecast.bugdet"),
    ({"model": "router:nope"}, "unknown operating point 'nope'"),
    ({"headers": {"x-routecast-lam": "lots"}}, "x-routecast-lam must be a finite number"),
    ({"headers": {"x-routecast-lam": "3"}, "routecast": {"lam": 4.0}}, "lam is set twice"),
    ({"model": "router:quality", "routecast": {"lam": 4.0}}, "give either operating_point or lam"),
])
def test_unknown_knobs_are_refused_and_never_forwarded(ckpt, backend, kwargs, message):
    before = sum(backend.counts.values())
    with TestClient(_app(ckpt, backend)) as client:
        r = _chat(client, MATH, **kwargs)
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    assert sum(backend.counts.values()) == before


def test_transparency_headers_and_realised_cost(ckpt, backend):
    with TestClient(_app(ckpt, backend)) as client:
        r = _chat(client, MATH, model="router:quality")
        h = r.headers
        assert h["x-routecast-request-id"].startswith("rc-") and h["x-routecast-rank"] == "1"
        assert float(h["x-routecast-predicted-quality"]) == pytest.approx(1.0)
        assert float(h["x-routecast-expected-cost"]) == pytest.approx(0.01)
        assert h["x-routecast-propensity"] == "1" and h["x-routecast-sticky"] == "0"
        usage = r.json()["usage"]  # the fake backend reports 1 prompt and 1 completion token
        assert usage["routecast_cost_usd"] == pytest.approx((100.0 + 200.0) / 1e6)
        assert usage["routecast_request_id"] == h["x-routecast-request-id"] and usage["total_tokens"] == 2
        assert float(h["x-routecast-cost-usd"]) == pytest.approx(3e-4)


def test_system_only_chat_routes_on_its_system_prompt(ckpt, backend):
    with TestClient(_app(ckpt, backend)) as client:
        r = client.post("/v1/chat/completions", json={"model": "router:quality",
                                                      "messages": [{"role": "system", "content": MATH}]})
        assert r.status_code == 200 and r.headers["x-routecast-model"] == "large"
        # a code question in the system prompt, a vague user turn: the system prompt is read too
        r = client.post("/v1/chat/completions", json={"model": "router:quality", "messages": [
            {"role": "system", "content": MATH}, {"role": "user", "content": "ok, and?"}]})
        assert r.status_code == 200
        r = client.post("/v1/chat/completions", json={"model": "router", "messages": [{"role": "assistant",
                                                                                       "content": "hi"}]})
        assert r.status_code == 400 and "no user turn and no system prompt" in r.json()["error"]["message"]


@pytest.mark.parametrize("margin, switched", [(0.05, False), (None, True)])
def test_a_sticky_conversation_does_not_bounce(ckpt, backend, margin, switched):
    """Turn 1 (math) goes to large; turn 2 (small talk: every model predicted equal) stays there
    unless stickiness is off."""
    with TestClient(_app(ckpt, backend, sticky_margin=margin)) as client:
        first = _chat(client, MATH, model="router:quality", user="conv-1")
        second = _chat(client, CHAT, model="router:quality", user="conv-1")
        other = _chat(client, CHAT, model="router:quality", headers={"x-routecast-conversation": "conv-2"})
    assert first.headers["x-routecast-model"] == "large"
    assert (second.headers["x-routecast-model"] != "large") is switched
    assert second.headers["x-routecast-sticky"] == ("0" if switched else "1")
    assert other.headers["x-routecast-model"] == "small"  # a new conversation routes freely


def test_openai_client_sees_the_decision_streaming_too(ckpt, backend):
    from openai import OpenAI

    with serving(ckpt, backends_for({"small": backend, "medium": backend, "large": backend})) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model="router:quality", messages=[{"role": "user", "content": MATH}])
        assert raw.headers["x-routecast-model"] == "large" and raw.headers["x-routecast-operating-point"] == "quality"
        assert raw.parse().usage.model_extra["routecast_cost_usd"] == pytest.approx(0.01)  # no price table
        with client.chat.completions.with_streaming_response.create(
                model="router", stream=True, messages=[{"role": "user", "content": MATH}],
                extra_headers={"x-routecast-operating-point": "quality"}) as streamed:
            assert streamed.headers["x-routecast-model"] == "large"
            assert streamed.headers["x-routecast-request-id"].startswith("rc-")
            assert float(streamed.headers["x-routecast-cost-usd"]) == pytest.approx(0.01)
