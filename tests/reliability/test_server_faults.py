"""The server under misbehaving backends and hostile requests: fall back, or answer a clear 4xx/5xx.

Backends are real sockets on 127.0.0.1 (tests/_support/fake_backend.py); "refused" is a port
nothing listens on.
"""

from __future__ import annotations

import json
import time

import pytest

from fastapi.testclient import TestClient

from routecast.errors import ConfigError
from routecast.serving.app import create_app
from tests._support.fake_backend import FakeBackend, free_port
from tests._support.serving import backends_for, make_checkpoint, serving

MATH = "Solve for x: 3x + 4 = 10"  # ranking at lam=0: large, medium, small
CHAT_BODY = {"model": "router", "messages": [{"role": "user", "content": MATH}]}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("faults") / "ck")


@pytest.fixture
def trio():
    """One fake backend per model, so each can fail on its own."""
    backends = {m: FakeBackend(m, hang_seconds=3.0) for m in ("small", "medium", "large")}
    yield backends
    for b in backends.values():
        b.stop()


def _app(ckpt, mapping, timeout=0.5, **settings):
    return create_app(ckpt, backends_config=backends_for(mapping, timeout=timeout), settings=settings or None)


@pytest.mark.parametrize("mode", ["500", "drop", "refused"])
def test_failed_backend_falls_back_to_next_ranked_model(ckpt, trio, mode):
    """Fallback only when the first attempt produced no answer and never can: refused, a 5xx, or the
    connection closed before any byte of an answer."""
    mapping = dict(trio)
    if mode == "refused":
        mapping["large"] = f"http://127.0.0.1:{free_port()}/v1"
    else:
        trio["large"].mode = mode
    with TestClient(_app(ckpt, mapping)) as client:
        for stream in (False, True):
            r = client.post("/v1/chat/completions", json={**CHAT_BODY, "stream": stream})
            assert r.status_code == 200, r.text
            assert r.headers["x-routecast-model"] == "medium"
            assert r.headers["x-routecast-fallback"] == "large->medium"
            if stream:
                assert '"content": "medium:"' in r.text and r.text.rstrip().endswith("data: [DONE]")
            else:
                assert r.json()["choices"][0]["message"]["content"] == "medium:medium"
        metrics = client.get("/metrics").text
    assert 'routecast_fallbacks_total{from_model="large",to_model="medium"} 2.0' in metrics
    assert trio["medium"].counts["medium"] == 2
    assert trio["large"].counts["large"] == 0


@pytest.mark.parametrize("mode, status, code", [("garbage", 502, "backend_unavailable"),
                                                ("hang", 504, "backend_timeout")])
def test_backend_that_may_have_answered_is_never_retried_elsewhere(ckpt, trio, mode, status, code):
    """A 200 that is not a completion, or a timeout (the backend may still answer): the backend may
    have processed (and billed) the request, so no second backend gets it."""
    trio["large"].mode = mode
    with TestClient(_app(ckpt, trio, timeout=0.5)) as client:
        for stream in (False, True):
            r = client.post("/v1/chat/completions", json={**CHAT_BODY, "stream": stream})
            assert r.status_code == status, r.text
            assert r.json()["error"]["code"] == code and r.headers["x-routecast-model"] == "large"
            assert "x-routecast-fallback" not in r.headers and "127.0.0.1" not in r.text
    assert trio["medium"].counts == {} and trio["small"].counts == {}


def test_every_backend_failing_gives_502_with_attempts(ckpt, trio):
    for b in trio.values():
        b.mode = "500"
    with TestClient(_app(ckpt, trio)) as client:
        r = client.post("/v1/chat/completions", json=CHAT_BODY)
    assert r.status_code == 502
    assert r.headers["x-routecast-fallback"] == "large->medium->small"
    error = r.json()["error"]
    assert error["code"] == "backend_unavailable"
    assert [a["model"] for a in error["attempts"]] == ["large", "medium", "small"]
    assert "HTTP 500" in error["message"]


def test_last_backend_timing_out_gives_504(ckpt, trio):
    trio["large"].mode = "500"  # nothing produced: the next model is tried
    trio["medium"].mode = "hang"
    with TestClient(_app(ckpt, trio, timeout=0.3)) as client:
        start = time.monotonic()
        r = client.post("/v1/chat/completions", json=CHAT_BODY)
        elapsed = time.monotonic() - start
    assert r.status_code == 504 and r.json()["error"]["code"] == "backend_timeout"
    assert elapsed < 2.5  # bounded by the backend timeout, not by the hanging backend
    assert [a["model"] for a in r.json()["error"]["attempts"]] == ["large", "medium"]
    assert trio["small"].counts == {}  # a timed-out request may have been processed: never sent on


def test_explicit_model_gets_no_fallback(ckpt, trio):
    trio["medium"].mode = "500"
    with TestClient(_app(ckpt, trio)) as client:
        r = client.post("/v1/chat/completions", json={**CHAT_BODY, "model": "medium"})
    assert r.status_code == 502 and "x-routecast-fallback" not in r.headers
    assert trio["large"].counts == {} and trio["small"].counts == {}


def test_backend_4xx_is_passed_through_without_fallback(ckpt, trio):
    trio["large"].mode = "400"
    with TestClient(_app(ckpt, trio)) as client:
        for stream in (False, True):
            r = client.post("/v1/chat/completions", json={**CHAT_BODY, "stream": stream})
            # the backend's body is never relayed (it may echo the bearer key): routecast's message, its status
            assert r.status_code == 400 and "max_tokens" not in r.text
            assert r.json()["error"]["code"] == "backend_rejected" and "HTTP 400" in r.json()["error"]["message"]
            assert r.headers["x-routecast-model"] == "large" and "x-routecast-fallback" not in r.headers
    assert trio["medium"].counts == {} and trio["small"].counts == {}


def test_invalid_routing_knob_is_refused_before_any_backend_call(ckpt, trio):
    with TestClient(_app(ckpt, trio)) as client:
        r = client.post("/v1/chat/completions", json={**CHAT_BODY, "routecast": {"lam": -1}})
    assert r.status_code == 400 and "lam must be a finite number >= 0" in r.json()["error"]["message"]
    assert trio["large"].counts == {}


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/route", b"{not json", 400, "not acceptable JSON"),
    ("/v1/chat/completions", b"{not json", 400, "not acceptable JSON"),
    ("/v1/route", json.dumps({"prompt": "x", "temperature": 1}).encode(), 400, "temperature: Extra inputs are not permitted"),
    ("/v1/route", json.dumps({"prompt": "x", "prompts": ["y"]}).encode(), 400, "exactly one of"),
    ("/v1/route", json.dumps({"prompts": ["x"] * 9}).encode(), 413, "9 prompts in one request; the limit is 8"),
    ("/v1/route", json.dumps({"prompts": [1, 2]}).encode(), 400, "prompts.0: Input should be a valid string"),
    ("/v1/route", json.dumps(["x"]).encode(), 400, "must be a JSON object"),
    ("/v1/route", json.dumps({"prompt": "x", "lam": 1, "budget": 2}).encode(), 400, "at most one of"),
    ("/v1/route", json.dumps({"prompt": "x" * 5000}).encode(), 413, "exceeds the limit of 4096 bytes"),
    ("/v1/chat/completions", json.dumps({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}).encode(),
     404, "unknown model 'gpt-9'; use 'router'"),
    ("/v1/chat/completions", json.dumps({"model": "router", "messages": []}).encode(), 400, "'messages' must be"),
    ("/v1/chat/completions", json.dumps({"model": "router", "messages": [{"role": "user", "content": "x"}],
                                         "routecast": {"lamb": 1}}).encode(), 400, "routecast.lamb|lamb: Extra"),
])
def test_bad_requests_get_clear_4xx(ckpt, trio, path, body, status, message):
    with TestClient(_app(ckpt, trio, max_prompts=8, max_body_bytes=4096)) as client:
        r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    import re

    assert re.search(message, r.json()["error"]["message"]), r.json()
    assert sum(sum(b.counts.values()) for b in trio.values()) == 0


def test_oversized_body_without_content_length_is_cut(ckpt, trio):
    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    with TestClient(_app(ckpt, trio, max_body_bytes=4096)) as client:
        r = client.post("/v1/route", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_no_backend_for_routed_models_is_503(ckpt):
    with TestClient(create_app(ckpt)) as client:
        r = client.post("/v1/chat/completions", json=CHAT_BODY)
    assert r.status_code == 503 and "needs a backends config" in r.json()["error"]["message"]


def test_bad_backends_file_fails_before_serving(ckpt, tmp_path):
    bad = tmp_path / "backends.yaml"
    bad.write_text("backends:\n  large:\n    base_url: ftp://nope\n")
    with pytest.raises(ConfigError, match="base_url must be an http"):
        create_app(ckpt, backends_config=bad)
    bad.write_text("backends:\n  large:\n    base_url: http://x\n    api_key: secret\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['api_key'\]"):
        create_app(ckpt, backends_config=bad)


def test_real_server_fallback_and_backend_killed(ckpt, trio):
    """On a real uvicorn server: kill the top-ranked backend mid-test; requests move on."""
    with serving(ckpt, backends_for(trio, timeout=1.0)) as server:
        import httpx

        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.post("/v1/chat/completions", json=CHAT_BODY).headers["x-routecast-model"] == "large"
            trio["large"].stop()
            r = http.post("/v1/chat/completions", json=CHAT_BODY)
            assert r.status_code == 200 and r.headers["x-routecast-fallback"] == "large->medium"
            assert 'routecast_backend_errors_total{kind="connect",model="large"} 1.0' in http.get("/metrics").text
