"""The HTTP server: /v1/route, the OpenAI-compatible proxy (TestClient and a real uvicorn server
talked to with the official openai client), /v1/models, /health, /metrics."""

from __future__ import annotations

import sys

import pytest

from fastapi.testclient import TestClient

from routecast.data.chat_text import routing_text
from routecast.serving.app import create_app
from tests._support.fake_backend import FakeBackend
from tests._support.serving import backends_for, make_checkpoint, serving

MATH = "Solve for x: 3x + 4 = 10"
CHAT = "Say hello to Bo in a cheerful way"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("app") / "ck")


@pytest.fixture
def backends():
    cheap, strong = FakeBackend("cheap"), FakeBackend("strong")
    yield cheap, strong
    cheap.stop()
    strong.stop()


def _client(ckpt, cheap, strong, **settings):
    app = create_app(ckpt, backends_config=backends_for({"small": cheap, "medium": cheap, "large": strong}),
                     settings=settings or None)
    return TestClient(app)


def test_route_endpoint(ckpt):
    with TestClient(create_app(ckpt)) as client:
        r = client.post("/v1/route", json={"prompts": [MATH, CHAT], "lam": 30})
        assert r.status_code == 200
        body = r.json()
        assert body["router_type"] == "knn"
        assert [d["model"] for d in body["decisions"]] == ["large", "small"]
        assert body["decisions"][0]["predicted_quality"]["large"] == pytest.approx(1.0)
        r = client.post("/v1/route", json={"prompt": MATH, "lam": 1e6})  # price dominates: cheapest
        assert r.json()["decisions"][0]["model"] == "small"
        r = client.post("/v1/route", json={"prompt": MATH, "budget": 0.0001})
        assert r.status_code == 200 and r.json()["decisions"][0]["model"] == "small"
        assert client.get("/health").json() == {"status": "ok"}  # liveness only: no path, URL or model
        info = client.get("/v1/router").json()
        assert info["router_type"] == "knn" and info["models"] == ["small", "medium", "large"]
        assert "checkpoint" not in info
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert ids == ["router", "auto", "small", "medium", "large"]
        metrics = client.get("/metrics").text
        assert 'routecast_decisions_total{model="large"} 1.0' in metrics
        assert 'routecast_decisions_total{model="small"} 3.0' in metrics
        assert 'routecast_requests_total{endpoint="/v1/route",key_id="anonymous",status="200"} 3.0' in metrics


def test_two_apps_do_not_share_metrics(ckpt):
    with TestClient(create_app(ckpt)) as a, TestClient(create_app(ckpt)) as b:
        a.post("/v1/route", json={"prompt": MATH})
        assert 'routecast_decisions_total{model="large"} 1.0' in a.get("/metrics").text
        assert "routecast_decisions_total{" not in b.get("/metrics").text


def test_chat_routes_forwards_and_bypasses(ckpt, backends):
    cheap, strong = backends
    with _client(ckpt, cheap, strong) as client:
        r = client.post("/v1/chat/completions", json={
            "model": "router", "messages": [{"role": "user", "content": MATH}],
            "temperature": 0.2, "logit_bias": {}, "user": "u1", "routecast": {"lam": 30}})
        assert r.status_code == 200, r.text
        assert r.headers["x-routecast-model"] == "large" and "x-routecast-fallback" not in r.headers
        assert r.json()["choices"][0]["message"]["content"] == "strong:large"
        r = client.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": CHAT}]})
        assert r.json()["choices"][0]["message"]["content"] == "cheap:small"
        r = client.post("/v1/chat/completions", json={"model": "medium", "messages": [{"role": "user", "content": MATH}]})
        assert r.headers["x-routecast-model"] == "medium"
        assert r.json()["choices"][0]["message"]["content"] == "cheap:medium"
    assert dict(strong.counts) == {"large": 1} and dict(cheap.counts) == {"small": 1, "medium": 1}


def test_routing_text_options_put_last_user_message_first():
    """The server's routing text is the data layer's policy with its options (system, N earlier turns, cut)."""
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": [{"type": "text", "text": "follow-up"}]}]
    assert routing_text(messages) == "follow-up\n\nbe nice"  # the default policy: user turn, system prompt
    assert routing_text(messages, system_prompt=False, earlier_turns=2) == "follow-up\n\nan answer\n\nfirst question"
    assert routing_text(messages, earlier_turns=1) == "follow-up\n\nbe nice\n\nan answer"
    assert routing_text(messages, max_chars=12, system_prompt=False, earlier_turns=2) == "follow-up\n\na"
    assert routing_text([{"role": "system", "content": "only rules"}], system_prompt=False) == "only rules"


def test_real_server_with_openai_client(ckpt, backends):
    """A real uvicorn server on loopback, the official openai client, streaming and not."""
    from openai import NotFoundError, OpenAI

    cheap, strong = backends
    with serving(ckpt, backends_for({"small": cheap, "medium": cheap, "large": strong})) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": MATH}])
        assert raw.headers["x-routecast-model"] == "large"
        completion = raw.parse()
        assert completion.choices[0].message.content == "strong:large"
        completion = client.chat.completions.create(model="router", messages=[{"role": "user", "content": CHAT}],
                                                    extra_body={"routecast": {"lam": 30}})
        assert completion.choices[0].message.content == "cheap:small"
        stream = client.chat.completions.create(model="router", stream=True,
                                                messages=[{"role": "user", "content": MATH}])
        pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
        assert "".join(pieces) == "strong:large"
        strong.mode = "500"  # the strong backend breaks: streaming falls back to the next-ranked model
        stream = client.chat.completions.create(model="router", stream=True,
                                                messages=[{"role": "user", "content": MATH}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "cheap:medium"
        assert [m.id for m in client.models.list()] == ["router", "auto", "small", "medium", "large"]
        with pytest.raises(NotFoundError, match="unknown model 'gpt-9'"):
            client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert strong.counts["large"] == 2 and cheap.counts == {"small": 1, "medium": 1}


def test_routecast_serve_cli_with_yaml_backends(ckpt, backends, tmp_path):
    """`routecast serve CKPT --port P --backends FILE` as a user runs it, talked to with openai."""
    import subprocess
    import time

    import httpx
    from openai import OpenAI

    from tests._support.fake_backend import free_port

    cheap, strong = backends
    config = tmp_path / "backends.yaml"
    config.write_text(f"backends:\n  large:\n    base_url: {strong.base_url}\n    timeout: 5\n"
                      f"  '*':\n    base_url: {cheap.base_url}\n")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "routecast.cli", "serve", str(ckpt), "--port", str(port),
                               "--backends", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=10)
        math = client.chat.completions.create(model="router", messages=[{"role": "user", "content": MATH}])
        chat = client.chat.completions.create(model="router", messages=[{"role": "user", "content": CHAT}])
        assert (math.choices[0].message.content, chat.choices[0].message.content) == ("strong:large", "cheap:small")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert strong.counts == {"large": 1} and cheap.counts == {"small": 1}


def test_serve_cli_refuses_tampered_checkpoint_before_binding(ckpt, tmp_path):
    import shutil
    import subprocess

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    (bad / "x.pkl").write_bytes(b"\x80")
    done = subprocess.run([sys.executable, "-m", "routecast.cli", "serve", str(bad), "--port", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "x.pkl: file is not listed in manifest.json" in done.stderr


def test_serve_cli_refuses_an_exposed_host_without_keys(ckpt, tmp_path):
    """`routecast serve CKPT --host 0.0.0.0` without keys: one line, exit 2, nothing bound."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "ROUTECAST_API_KEYS"}
    done = subprocess.run([sys.executable, "-m", "routecast.cli", "serve", str(ckpt), "--host", "0.0.0.0",
                           "--port", "1"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: refusing to serve on 0.0.0.0 without client API keys: give api_keys (a keys file) or set "
        "$ROUTECAST_API_KEYS, or set insecure_no_auth to serve an open proxy anyway"]
    config = tmp_path / "server.yaml"
    config.write_text("host: 0.0.0.0\nrate_limit_rps: '20'\n")
    done = subprocess.run([sys.executable, "-m", "routecast.cli", "serve", str(ckpt), "--config", str(config),
                           "--insecure-no-auth"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "server setting rate_limit_rps must be a number, got '20'" in done.stderr
