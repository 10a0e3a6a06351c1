"""The server on a network: authentication, limits, isolation, no secrets out, backend deadlines.

Every case runs on loopback (TestClient, or a real uvicorn server on 127.0.0.1) with bounded
request counts; fake backends are real sockets (tests/_support/fake_backend.py). Counts are
printed (``pytest -s``) for the closing note of issue 14.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from routecast.errors import ConfigError
from routecast.serving.app import create_app
from tests._support.fake_backend import FakeBackend, free_port
from tests._support.serving import make_checkpoint, serving

KEY, KEY2 = "rc-alice-0123456789abcdef", "rc-bob-0123456789abcdefgh"
AUTH, AUTH2 = {"authorization": f"Bearer {KEY}"}, {"authorization": f"Bearer {KEY2}"}
MATH = "Solve for x: 3x + 4 = 10"  # routed to 'large' (expected cost 0.01) at lam=0
CHAT = {"model": "router", "messages": [{"role": "user", "content": MATH}]}
SECRETS = ("hunter2-password", "sk-query-secret-42", "sk-env-secret-77")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("security") / "ck")


@pytest.fixture
def backend():
    b = FakeBackend("B", hang_seconds=3.0)
    yield b
    b.stop()


def _backends(b, timeout=2.0, **overrides):
    entry = {"base_url": b.base_url, "timeout": timeout}
    return {"backends": {m: {**entry, **overrides.get(m, {})} for m in ("small", "medium", "large")}}


def _is_openai_error(r) -> bool:
    body = r.json()
    return set(body) == {"error"} and isinstance(body["error"]["message"], str) and "type" in body["error"]


# ----------------------------------------------------------------------------- authentication
PROTECTED = [("POST", "/v1/route", {"prompt": MATH}), ("POST", "/v1/chat/completions", CHAT),
             ("GET", "/v1/models", None), ("GET", "/v1/router", None), ("GET", "/metrics", None),
             ("GET", "/openapi.json", None), ("GET", "/docs", None), ("GET", "/nope", None),
             ("POST", "/v1/route", {"prompt": "\ud800"})]
BAD_HEADERS = [{}, {"authorization": "Bearer wrong-key-0123456789abc"}, {"authorization": f"Basic {KEY}"},
               {"authorization": f"Bearer {KEY}x"}, {"authorization": "Bearer"}, {"x-api-key": KEY}]


def test_every_endpoint_but_health_needs_a_valid_key(ckpt, backend):
    served = refused = 0
    with TestClient(create_app(ckpt, backends=_backends(backend), api_keys=[KEY, KEY2])) as client:
        for method, path, body in PROTECTED:
            for headers in BAD_HEADERS:
                content = None if body is None else json.dumps(body).encode()
                r = client.request(method, path, content=content, headers={**headers, "content-type": "application/json"})
                if r.status_code == 401 and _is_openai_error(r) and r.headers["www-authenticate"] == "Bearer":
                    refused += 1
                else:
                    served += 1
        assert client.get("/health").json() == {"status": "ok"}  # liveness needs no key
        assert client.post("/v1/route", json={"prompt": MATH}, headers=AUTH).status_code == 200
        assert client.post("/v1/chat/completions", json=CHAT, headers=AUTH2).status_code == 200
        assert client.get("/v1/models", headers=AUTH).status_code == 200
        metrics = client.get("/metrics", headers=AUTH).text
    print(f"\nauth: {served + refused} requests without a valid key, {served} served, {refused} refused with 401")
    assert served == 0 and refused == len(PROTECTED) * len(BAD_HEADERS)
    assert sum(backend.counts.values()) == 1  # only the authenticated chat reached a backend
    assert KEY not in metrics and KEY2 not in metrics
    assert 'endpoint="/v1/route",key_id="none",status="401"' in metrics
    assert 'endpoint="/v1/chat/completions",key_id="invalid",status="401"' in metrics
    assert 'endpoint="other",key_id="none",status="401"' in metrics


def test_public_metrics_and_docs_are_opt_in(ckpt):
    with TestClient(create_app(ckpt, api_keys=[KEY])) as client:
        assert client.get("/openapi.json", headers=AUTH).status_code == 404  # docs are off by default
        assert client.get("/metrics").status_code == 401
    with TestClient(create_app(ckpt, {"public_metrics": True, "docs": True}, api_keys=[KEY])) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/openapi.json").json()["info"]["title"] == "routecast"
        assert client.post("/v1/route", json={"prompt": MATH}).status_code == 401


def test_serve_refuses_an_exposed_host_without_keys(ckpt, tmp_path, monkeypatch):
    from routecast.serving.serve import build_server

    monkeypatch.delenv("ROUTECAST_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0 without client API keys"):
        build_server(ckpt, {"host": "0.0.0.0"})
    app, kwargs = build_server(ckpt, {"host": "0.0.0.0", "insecure_no_auth": True})
    assert kwargs["host"] == "0.0.0.0"
    config = tmp_path / "server.yaml"
    keys = tmp_path / "keys.txt"
    keys.write_text(KEY + "\n")
    config.write_text(f"host: 0.0.0.0\nport: 9999\napi_keys: {keys}\nrate_limit_rps: 20\nmax_prompts: 16\n")
    app, kwargs = build_server(ckpt, {"max_prompts": 8, "port": None}, config)  # a flag wins over the file
    settings = app.state.server.settings
    assert (kwargs["port"], settings.rate_limit_rps, settings.max_prompts) == (9999, 20.0, 8)
    monkeypatch.setenv("ROUTECAST_API_KEYS", KEY)
    build_server(ckpt, {"host": "0.0.0.0"})  # keys from the environment are enough


# ----------------------------------------------------------------------------- no secrets out
def test_health_errors_and_logs_leak_no_url_key_or_path(ckpt, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SECRET_BACKEND_KEY", SECRETS[2])
    echo = FakeBackend("echo", mode="echo")
    port = free_port()  # nothing listens: connection refused
    config = tmp_path / "backends.yaml"
    config.write_text(
        "backends:\n"
        f"  large:\n    base_url: http://admin:{SECRETS[0]}@127.0.0.1:{port}/v1?key={SECRETS[1]}\n"
        "    api_key_env: SECRET_BACKEND_KEY\n    timeout: 1\n"
        f"  medium:\n    base_url: http://admin:{SECRETS[0]}@127.0.0.1:{echo.port}/v1?key={SECRETS[1]}\n"
        "    api_key_env: SECRET_BACKEND_KEY\n    timeout: 1\n"
        f"  small:\n    base_url: http://127.0.0.1:{port}/v1?token={SECRETS[1]}\n    timeout: 1\n")
    texts = []
    caplog.set_level(logging.DEBUG, logger="routecast")
    try:
        with TestClient(create_app(ckpt, backends=config, api_keys=[KEY])) as client:
            for path in ("/health", "/v1/models", "/v1/router", "/metrics"):
                r = client.get(path, headers=AUTH)
                assert r.status_code == 200
                texts.append(r.text)
            for body in (CHAT, {**CHAT, "stream": True}, {**CHAT, "model": "small"}, {**CHAT, "model": "medium"},
                         {**CHAT, "model": "gpt-9"}):
                r = client.post("/v1/chat/completions", json=body, headers=AUTH)
                assert r.status_code >= 400 and _is_openai_error(r), r.text
                texts.append(r.text + json.dumps(dict(r.headers)))
    finally:
        echo.stop()
    texts.append(caplog.text)
    leaks = [(s, t[:200]) for t in texts for s in (*SECRETS, str(ckpt), "127.0.0.1", "admin", "http://") if s in t]
    print(f"\nsecrets: {len(texts)} bodies/logs checked for {len(SECRETS) + 4} planted values, {len(leaks)} leaks")
    assert leaks == []
    assert texts[0] == '{"status":"ok"}'


# ----------------------------------------------------------------------------- input validation
@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/route", {"prompt": MATH, "lam": "1e3"}, 400, "lam: Input should be a valid number"),
    ("/v1/route", {"prompt": MATH, "lam": True}, 400, "lam: Input should be a valid number"),
    ("/v1/route", {"prompts": []}, 400, "'prompts' is empty"),
    ("/v1/route", {"prompt": ""}, 400, "'prompt' is empty"),
    ("/v1/route", {"prompts": ["ok", "   "]}, 400, r"'prompts\[1\]' is empty"),
    ("/v1/route", {"prompts": ["x"] * 9}, 413, "9 prompts in one request; the limit is 8"),
    ("/v1/chat/completions", {**CHAT, "routecast": {"lam": "1"}}, 400, "routecast.lam: Input should be a valid number"),
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}, 400, "'stream' must be true or false"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "  "}]}, 400, "no user turn and no system prompt to route on"),
])
def test_strict_types_and_empty_prompts(ckpt, backend, path, body, status, message):
    with TestClient(create_app(ckpt, {"max_prompts": 8}, backends=_backends(backend))) as client:
        r = client.post(path, json=body)
    import re

    assert r.status_code == status and re.search(message, r.json()["error"]["message"]), r.text
    assert sum(backend.counts.values()) == 0


@pytest.mark.parametrize("raw", [b'{"prompt": "\\ud800"}', b'{"prompt": "a", "lam": ' + b"1" * 5000 + b"}",
                                 b'{"prompt": ' * 5000 + b'"x"' + b"}" * 5000, b"[" * 200_000])
def test_bad_json_is_400_and_keeps_the_connection(ckpt, raw):
    """Each used to be a bare 500 that closed the keep-alive connection."""
    with serving(ckpt) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for path in ("/v1/route", "/v1/chat/completions"):
                r = client.post(path, content=raw, headers={"content-type": "application/json"})
                assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
            assert client.post("/v1/route", json={"prompt": MATH}).status_code == 200
            assert client.get("/health").status_code == 200


def test_poison_requests_fail_alone_in_their_micro_batch(ckpt):
    """300 good requests and 30 with a lone surrogate, concurrently: 0 collateral failures."""
    good = [{"prompt": f"{MATH} [{i}]", "lam": 30.0} for i in range(300)]
    poison = '{"prompt": "bad \\ud800 prompt", "lam": 30.0}'

    async def drive(url):
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            async def one(i):
                if i % 11 == 0:
                    r = await client.post("/v1/route", content=poison, headers={"content-type": "application/json"})
                    return "poison", r.status_code
                r = await client.post("/v1/route", json=good[i % len(good)])
                return "good", r.status_code
            results = await asyncio.gather(*(one(i) for i in range(330)))
            metrics = (await client.get("/metrics")).text
        return results, metrics

    with serving(ckpt, settings={"batch_wait_ms": 5.0}) as server:
        results, metrics = asyncio.run(drive(server.url))
    good_status = [s for kind, s in results if kind == "good"]
    poison_status = [s for kind, s in results if kind == "poison"]
    collateral = sum(s != 200 for s in good_status)
    print(f"\npoison: {len(good_status)} good + {len(poison_status)} poison requests, {collateral} collateral "
          f"failures, poison answered {sorted(set(poison_status))}")
    assert collateral == 0 and set(poison_status) == {400}
    assert f'routecast_requests_total{{endpoint="/v1/route",key_id="anonymous",status="400"}} {len(poison_status)}.0' in metrics


# ----------------------------------------------------------------------------- limits
def test_rate_limits_are_per_key_and_answer_429(ckpt):
    settings = {"rate_limit_rps": 0.5, "rate_limit_burst": 2, "prompt_rate_limit": 0.5, "prompt_rate_burst": 6,
                "public_metrics": True}
    with TestClient(create_app(ckpt, settings, api_keys=[KEY, KEY2])) as client:
        codes = [client.post("/v1/route", json={"prompt": MATH}, headers=AUTH).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = client.post("/v1/route", json={"prompt": MATH}, headers=AUTH)
        assert r.json()["error"]["code"] == "rate_limit_requests" and int(r.headers["retry-after"]) >= 1
        assert client.post("/v1/route", json={"prompts": [MATH] * 5}, headers=AUTH2).status_code == 200
        r = client.post("/v1/route", json={"prompts": [MATH] * 5}, headers=AUTH2)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_prompts"
        metrics = client.get("/metrics").text
    from routecast.serving.guard.auth import hash_key

    alice, bob = hash_key(KEY)[7:17], hash_key(KEY2)[7:17]
    assert f'routecast_requests_total{{endpoint="/v1/route",key_id="{alice}",status="429"}} 2.0' in metrics
    assert f'routecast_requests_total{{endpoint="/v1/route",key_id="{bob}",status="429"}} 1.0' in metrics


def test_spend_budget_per_key_from_the_cost_model(ckpt, backend):
    with TestClient(create_app(ckpt, {"spend_budget_usd": 0.015}, backends=_backends(backend),
                               api_keys=[KEY, KEY2])) as client:
        answers = [client.post("/v1/chat/completions", json=CHAT, headers=AUTH) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 429]  # 'large' costs 0.01: 0.02 > 0.015 after two
        assert answers[2].json()["error"]["code"] == "budget_exceeded"
        assert client.post("/v1/chat/completions", json=CHAT, headers=AUTH2).status_code == 200
    assert backend.counts["large"] == 3


def test_body_size_cap_and_slow_body_deadline(ckpt):
    with serving(ckpt, settings={"max_body_bytes": 4096, "body_timeout_s": 0.5}) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            r = client.post("/v1/route", json={"prompt": "x" * 5000})
            assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: 100\r\n\r\n{\"prompt\":")
            start = time.monotonic()
            answer = _read_until_closed(sock, 5)
        assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer
        assert time.monotonic() - start < 3


def _read_until_closed(sock, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (socket.timeout, ConnectionError):
        pass
    return data


def test_800_half_open_connections_are_dropped(ckpt):
    """Connections that send nothing or half a request head are closed at the header deadline."""
    with serving(ckpt, settings={"header_timeout_s": 1.0, "max_header_bytes": 2048}) as server:
        socks = []
        for i in range(800):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:
                sock.sendall(b"POST /v1/route HTTP/1.1\r\nhost: x\r\n")  # half a head, never finished
            socks.append(sock)
        start = time.monotonic()
        still_open = 0
        for sock in socks:
            left = max(0.1, 8 - (time.monotonic() - start))
            sock.settimeout(left)
            try:
                while sock.recv(4096):
                    pass
            except socket.timeout:
                still_open += 1
            except ConnectionError:
                pass
            sock.close()
        elapsed = time.monotonic() - start
        with httpx.Client(base_url=server.url, timeout=10) as client:  # the server still serves
            assert client.post("/v1/route", json={"prompt": MATH}).status_code == 200
            r = client.get("/health", headers={"x-big": "y" * 4000})
            assert r.status_code == 431
    print(f"\nhalf-open: 800 connections, {800 - still_open} dropped by the server, {still_open} still open "
          f"after {elapsed:.1f} s")
    assert still_open == 0


# ----------------------------------------------------------------------------- backends
def test_backend_deadline_is_total_and_answers_are_capped(ckpt):
    trickle, huge = FakeBackend("T", mode="trickle"), FakeBackend("H", mode="huge")
    backends = {"backends": {"large": {"base_url": trickle.base_url, "timeout": 1.0},
                             "medium": {"base_url": huge.base_url, "timeout": 5.0},
                             "small": {"base_url": huge.base_url, "timeout": 5.0}}}
    try:
        with TestClient(create_app(ckpt, {"max_response_bytes": 1_000_000}, backends=backends)) as client:
            for stream in (False, True):
                start = time.monotonic()
                r = client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
                assert time.monotonic() - start < 3  # cut at the 1 s deadline, not after 200 s of trickle
                assert r.status_code == 504 and r.json()["error"]["code"] == "backend_timeout", r.text
            r = client.post("/v1/chat/completions", json={**CHAT, "model": "medium"})
            assert r.status_code == 502 and r.json()["error"]["code"] == "response_too_large"
            assert len(r.content) < 10_000
    finally:
        trickle.stop()
        huge.stop()


def test_circuit_breaker_skips_a_dead_backend_for_everyone(ckpt, backend):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    backends = {"backends": {"large": {"base_url": dead, "timeout": 1.0},
                             "medium": {"base_url": backend.base_url, "timeout": 2.0},
                             "small": {"base_url": backend.base_url, "timeout": 2.0}}}
    with TestClient(create_app(ckpt, {"breaker_failures": 2, "breaker_cooldown_s": 60}, backends=backends,
                               api_keys=[KEY, KEY2])) as client:
        for i in range(6):
            r = client.post("/v1/chat/completions", json=CHAT, headers=AUTH if i % 2 else AUTH2)
            assert r.status_code == 200 and r.headers["x-routecast-model"] == "medium"
        metrics = client.get("/metrics", headers=AUTH).text
        r = client.post("/v1/chat/completions", json={**CHAT, "model": "large"}, headers=AUTH)
    assert 'routecast_backend_errors_total{kind="connect",model="large"} 2.0' in metrics  # tried twice only
    assert 'routecast_backend_errors_total{kind="breaker_open",model="large"} 4.0' in metrics
    assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable" and "retry-after" in r.headers
    assert backend.counts["medium"] == 6


def test_per_key_concurrency_slots(ckpt):
    slow = FakeBackend("S", mode="hang", hang_seconds=1.0)
    settings = {"max_concurrent_per_key": 1, "slot_wait_s": 0.3}

    async def drive(url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            first = asyncio.ensure_future(client.post("/v1/chat/completions", json=CHAT, headers=AUTH))
            await asyncio.sleep(0.2)
            second = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
            other = await client.post("/v1/route", json={"prompt": MATH}, headers=AUTH2)
            return (await first).status_code, second, other.status_code

    try:
        with serving(ckpt, _backends(slow, timeout=5.0), settings, api_keys=[KEY, KEY2]) as server:
            first, second, other = asyncio.run(drive(server.url))
    finally:
        slow.stop()
    assert first == 200 and other == 200  # another key is not held up by alice's slow chat
    assert second.status_code == 429 and second.json()["error"]["code"] == "concurrency_limit"


def test_health_says_unavailable_when_the_batcher_died(ckpt):
    with TestClient(create_app(ckpt)) as client:
        state = client.app.state.server
        assert client.get("/health").json() == {"status": "ok"}
        state.batcher._task.cancel()
        time.sleep(0.1)
        r = client.get("/health")
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}
