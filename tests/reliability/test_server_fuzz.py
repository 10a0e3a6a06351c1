"""Hypothesis fuzz of request bodies against the app: every answer is a 2xx or a 4xx with an
OpenAI-style error body; never a 500, a traceback, or a request served without a valid key.

Bodies are JSON values built from the fields the endpoints know (with values of every JSON type,
strings with lone surrogates and control characters, huge and tiny numbers, deep nesting) and raw
byte strings; each is sent with and without a valid key. Bounded: a fixed number of examples,
TestClient in process, one fake backend on loopback.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routecast.serving.app import create_app
from tests._support.fake_backend import FakeBackend
from tests._support.serving import make_checkpoint

KEY = "rc-fuzz-0123456789abcdefgh"
AUTH = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
FIELDS = ["prompt", "prompts", "lam", "budget", "strong_share", "target_quality", "model", "messages", "stream",
          "routecast", "role", "content", "temperature", "text", "type"]
text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
                    st.floats(allow_nan=False, allow_infinity=False), text, st.sampled_from(["router", "auto", "large"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.one_of(st.sampled_from(FIELDS), text), inner, max_size=5)),
    max_leaves=30)
bodies = st.one_of(st.dictionaries(st.sampled_from(FIELDS), values, max_size=6), values)
OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    ckpt = make_checkpoint(tmp_path_factory.mktemp("fuzz") / "ck")
    backend = FakeBackend("F")
    backends = {"backends": {m: {"base_url": backend.base_url, "timeout": 2} for m in ("small", "medium", "large")}}
    app = create_app(ckpt, {"max_body_bytes": 200_000}, backends=backends, api_keys=[KEY])
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c
    backend.stop()
    print(f"\nfuzz: {sum(OUTCOMES.values())} requests, statuses {dict(sorted(OUTCOMES.items()))}")


def _check(client, path: str, raw: bytes) -> None:
    anonymous = client.post(path, content=raw, headers={"content-type": "application/json"})
    OUTCOMES[anonymous.status_code] += 1
    assert anonymous.status_code == 401, anonymous.text  # nothing is served without a key
    r = client.post(path, content=raw, headers=AUTH)
    OUTCOMES[r.status_code] += 1
    assert r.status_code < 500 or r.status_code in (502, 503, 504), r.text
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and isinstance(body["error"]["message"], str), body
        assert "Traceback" not in r.text


def _encoded(body) -> bytes:
    return json.dumps(body).encode()  # ensure_ascii: lone surrogates become \ud800 escapes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=bodies)
def test_fuzz_route_bodies(client, body):
    _check(client, "/v1/route", _encoded(body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=bodies, messages=st.lists(st.dictionaries(st.sampled_from(["role", "content"]), values, max_size=2),
                                      max_size=3))
def test_fuzz_chat_bodies(client, body, messages):
    if isinstance(body, dict):
        body = {"model": "router", "messages": messages, **body}
    _check(client, "/v1/chat/completions", _encoded(body))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=200), st.builds(lambda n: b"[" * n, st.integers(0, 50_000)),
                     st.builds(lambda n: b'{"lam": ' + b"9" * n + b', "prompt": "x"}', st.integers(1, 6000))))
def test_fuzz_raw_bytes(client, raw):
    for path in ("/v1/route", "/v1/chat/completions"):
        _check(client, path, raw)
