"""Unit tests of the server's guard pieces: the strict JSON parser, API keys, token buckets and
per-key limits, the circuit breaker, settings and config files, URL redaction."""

from __future__ import annotations

import hashlib
import json

import pytest

from routecast.errors import ConfigError
from routecast.serving.api_error import ApiError
from routecast.serving.backends import Backend, redact, redact_url
from routecast.serving.endpoints.common import parse_json_body
from routecast.serving.guard.auth import ApiKeys, bearer_token, hash_key
from routecast.serving.guard.breaker import CircuitBreaker
from routecast.serving.guard.key_limits import KeyLimits
from routecast.serving.guard.token_bucket import TokenBucket
from routecast.serving.server_config import ServerSettings, read_server_config

KEY = "rc-test-key-0123456789abcdef"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


# ----------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("raw, message", [
    (b'{"prompt": "\\ud800"}', "lone surrogate"),
    (b'{"prompt": "ok", "k": ["\\udfff"]}', "lone surrogate"),
    (b'{"\\ud800": 1}', "lone surrogate"),
    (b'{"lam": ' + b"9" * 5000 + b"}", "a number of 5000 characters"),
    (b'{"lam": 1e999}', "out of range"),
    (b'{"lam": NaN}', "NaN is not JSON"),
    (b'{"lam": -Infinity}', "-Infinity is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
    (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),
    (b'{"a": 1, "a": 2}', "key 'a' appears twice in one JSON object"),
    (b"\xff\xfe", "not UTF-8"),
    (b"{not json", "Expecting property name"),
])
def test_strict_json_refuses_with_400(raw, message):
    with pytest.raises(ApiError) as err:
        parse_json_body(raw)
    assert err.value.status == 400 and err.value.code == "invalid_json"
    assert message in err.value.message


def test_strict_json_accepts_ordinary_bodies():
    body = {"prompts": ["héllo ✓ 𝄞", "x"], "lam": 30, "n": [[[1.5]]], "u": "\u00e9"}
    assert parse_json_body(json.dumps(body).encode()) == body
    assert parse_json_body(json.dumps(body, ensure_ascii=False).encode()) == body
    assert parse_json_body("\ufeff{}".encode()) == {}  # a BOM is tolerated
    nested = parse_json_body(b"[" * 64 + b"]" * 64)  # exactly at the limit
    for _ in range(63):
        assert len(nested) == 1
        nested = nested[0]
    assert nested == []


# ----------------------------------------------------------------------------- keys
def test_api_keys_from_file_env_and_hashes(tmp_path):
    other = "another-key-abcdefghijklmnop"
    path = tmp_path / "keys.txt"
    path.write_text(f"# clients\n{KEY}\n\n{hash_key(other)}\n")
    keys = ApiKeys.load(path, environ={"ROUTECAST_API_KEYS": "env-key-0123456789abcd, ,"})
    assert len(keys) == 3
    assert keys.identify(KEY) == hashlib.sha256(KEY.encode()).hexdigest()[:10]
    assert keys.identify(other) == hashlib.sha256(other.encode()).hexdigest()[:10]
    assert keys.identify("env-key-0123456789abcd") == hashlib.sha256(b"env-key-0123456789abcd").hexdigest()[:10]
    assert keys.identify(KEY + "x") is None and keys.identify("") is None and keys.identify(None) is None
    assert all(KEY.encode() not in d for d in keys.digests)  # held as digests only
    assert ApiKeys.load(None, environ={}) is None


@pytest.mark.parametrize("text, message", [("short", "at least 16"), ("sha256:abc", "64 hex digits"),
                                           ("has a space in it 0123456789", "without spaces")])
def test_bad_key_entries_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "keys.txt"
    path.write_text(f"{KEY}\n{text}\n")
    with pytest.raises(ConfigError, match=rf"keys.txt, line 2: .*{message}"):
        ApiKeys.load(path, environ={})
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no key"):
        ApiKeys.load(empty, environ={})


def test_bearer_token():
    assert bearer_token(b"Bearer abc") == b"abc" and bearer_token(b"bearer  abc ") == b"abc"
    assert bearer_token(b"Basic abc") is None and bearer_token(b"Bearer ") is None and bearer_token(None) is None


# ----------------------------------------------------------------------------- limits
def test_token_bucket_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(2.0, 4.0, clock=clock)
    assert [bucket.take() for _ in range(4)] == [0.0] * 4
    assert bucket.take() == pytest.approx(0.5)  # one token comes back after 1/rate seconds
    clock.now += 0.5
    assert bucket.take() == 0.0
    clock.now += 10
    assert bucket.take(10) == 0.0  # larger than the burst: admitted from a full bucket, then it owes
    assert bucket.take() == pytest.approx((1 + 6) / 2.0)


def test_key_limits_are_per_key_and_answer_429():
    clock = Clock()
    limits = KeyLimits(rps=1, prompts_per_s=10, budget_usd=0.01, budget_period_s=60, clock=clock)
    limits.admit_request("a")
    with pytest.raises(ApiError) as err:
        limits.admit_request("a")
    assert err.value.status == 429 and err.value.code == "rate_limit_requests" and err.value.headers["retry-after"] == "1"
    limits.admit_request("b")  # another key has its own bucket
    limits.admit_prompts("a", 10)
    with pytest.raises(ApiError, match="prompts/s"):
        limits.admit_prompts("a", 5)
    limits.charge("a", 0.006)
    limits.check_budget("a")
    limits.charge("a", 0.006)
    with pytest.raises(ApiError) as err:
        limits.check_budget("a")
    assert err.value.status == 429 and err.value.code == "budget_exceeded" and err.value.type == "insufficient_quota"
    limits.check_budget("b")
    clock.now += 61  # a new budget period
    limits.check_budget("a")
    assert limits.spent("a") == 0.0


def test_circuit_breaker_opens_cools_down_and_probes_once():
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown_s=5, clock=clock)
    breaker.record_failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 5
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record_failure()  # the probe failed: another cooldown
    assert breaker.state == "open"
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


# ----------------------------------------------------------------------------- settings
@pytest.mark.parametrize("value, message", [({"rate_limit_rps": "20"}, "must be a number"),
                                            ({"rate_limit_rps": True}, "must be a number"),
                                            ({"max_prompts": 2.5}, "must be an integer"),
                                            ({"max_prompts": 0}, "> 0"),
                                            ({"docs": "yes"}, "true or false"),
                                            ({"max_body_bytes": None}, "cannot be null"),
                                            ({"nope": 1}, "unknown server setting")])
def test_settings_are_strictly_typed(value, message):
    with pytest.raises(ConfigError, match=message):
        ServerSettings.from_any(value)


def test_server_config_file(tmp_path):
    path = tmp_path / "server.yaml"
    path.write_text("host: 0.0.0.0\nrate-limit-rps: 20\nmax_prompts: 16\n")
    assert read_server_config(path) == {"host": "0.0.0.0", "rate_limit_rps": 20, "max_prompts": 16}
    path.write_text("port: '80'\n")
    with pytest.raises(ConfigError, match="port must be int"):
        read_server_config(path)
    path.write_text("max_body: 3\n")
    with pytest.raises(ConfigError, match="server.yaml: unknown key 'max_body'"):
        read_server_config(path)


def test_backend_urls_are_redacted():
    url = "https://user:hunter2-password@api.example.com:8443/v1?api_key=sk-secret-123&x=1"
    assert redact_url(url) == "https://api.example.com:8443/v1"
    backend = Backend("m", url)
    text = f"failed to reach {backend.chat_url}: user hunter2-password sk-secret-123"
    cleaned = redact(text, {"m": backend})
    assert "hunter2" not in cleaned and "sk-secret" not in cleaned and "api.example.com:8443/v1?" not in cleaned
