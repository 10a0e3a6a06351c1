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


@pytest.fixture
def backend():
    """One fake backend for every model; a test may set what it reports (usage_json, content)."""
    with FakeBackend("B") as b:
        yield b


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """The knn router of tests/_support/serving.py: math prompts go to 'large', chat to 'small'."""
    return make_checkpoint(tmp_path_factory.mktemp("probe") / "ck")


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


# ----------------------------------------------------------------------------- 2. reported usage
HOSTILE_USAGE = ['{"prompt_tokens": -1000000000, "completion_tokens": 1, "total_tokens": -999999999}',
                 '{"prompt_tokens": 1.8e308, "completion_tokens": 1, "total_tokens": 1.8e308}',
                 '{"prompt_tokens": 1, "completion_tokens": ' + "9" * 400 + ', "total_tokens": 2}']
PRICES = {m: [1000.0, 1000.0] for m in MODELS}  # USD per million tokens: 1 token in + 1 out = 0.002 USD


def _strict(text: str):
    """The body as JSON that every parser accepts (``Infinity``/``NaN`` refused)."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def _implausible(client, headers=None) -> float:
    metrics = client.get("/metrics", headers=headers or {}).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("routecast_implausible_usage_total{"))


@pytest.mark.parametrize("usage", HOSTILE_USAGE, ids=["negative", "1.8e308", "400-digits"])
def test_hostile_usage_is_charged_at_the_expected_cost_router_path(ckpt, backend, usage, caplog):
    backend.usage_json = usage
    app = create_app(ckpt, {"spend_budget_usd": 0.05}, backends=backends_for({m: backend for m in MODELS}),
                     price_table=PRICES, api_keys=[KEY_A])
    with TestClient(app) as client:
        r = _chat(client, AUTH_A, routecast={"lam": 0})
        assert r.status_code == 200, r.text
        body = _strict(r.text)
        assert body["choices"][0]["message"]["content"] == "B:large"  # the answer still reaches the client
        assert body["usage"]["routecast_cost_usd"] == pytest.approx(0.01)  # large's expected cost
        assert float(r.headers["x-routecast-cost-usd"]) == pytest.approx(0.01)
        assert app.state.server.limits.spent(_key_id(KEY_A)) == pytest.approx(0.01)
        assert _implausible(client, AUTH_A) == 1
    assert any("usage of model large ignored" in rec.getMessage() for rec in caplog.records)
    # a plausible usage is still priced: 1 + 1 tokens at 1000 USD/Mtok
    backend.usage_json = None
    with TestClient(create_app(ckpt, backends=backends_for({m: backend for m in MODELS}),
                               price_table=PRICES)) as client:
        r = _chat(client, routecast={"lam": 0})
        assert r.json()["usage"]["routecast_cost_usd"] == pytest.approx(0.002) and _implausible(client) == 0


def test_usage_bounds_come_from_the_request_and_the_answer():
    from routecast.serving.usage import MAX_TOKENS, implausible_usage

    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    answer = {"choices": [{"message": {"role": "assistant", "content": "hello"}}]}
    assert implausible_usage({"prompt_tokens": 20, "completion_tokens": 100}, request, answer) is None
    assert implausible_usage(None, request, answer) is None
    assert "completion_tokens 101 exceeds 100" in implausible_usage({"completion_tokens": 101}, request, answer)
    assert "not a non-negative integer (True)" in implausible_usage({"prompt_tokens": True}, request, answer)
    assert "not a non-negative integer (3.0)" in implausible_usage({"completion_tokens": 3.0}, request, answer)
    unbounded = {"messages": request["messages"], "max_tokens": 10 * MAX_TOKENS}
    assert f"exceeds {MAX_TOKENS}" in implausible_usage({"completion_tokens": MAX_TOKENS + 1}, unbounded, answer)
    # without max_tokens: the answer's size plus what a reasoning model may bill unseen
    assert implausible_usage({"completion_tokens": 90_000}, request | {"max_tokens": None}, answer) is None
    assert implausible_usage({"completion_tokens": 200_000}, request | {"max_tokens": None}, answer) is not None


def _key_id(key: str) -> str:
    from routecast.serving.guard.auth import ApiKeys

    return ApiKeys.from_entries([("k", key)]).identify(key)


@pytest.fixture(scope="module")
def cascade_ckpt(tmp_path_factory):
    """A tiny cascade over two models (A cheap, C strong) trained on a synthetic log with answers."""
    import numpy as np

    from routecast.cascade.cascade_router import CascadeRouter
    from routecast.data.outcome_log import OutcomeLog

    rng = np.random.default_rng(0)
    n = 160
    prompts = [f"question {i}: what is {int(rng.integers(10, 99))} plus {int(rng.integers(10, 99))}?" for i in range(n)]
    right = rng.random((n, 2)) < [0.5, 0.95]
    responses = np.array([[f"The answer is {'right' if ok else 'wrong'} {i}." for ok in row]
                          for i, row in enumerate(right)], dtype=object)
    log = OutcomeLog(np.array([f"p{i}" for i in range(n)], dtype=object), np.array(prompts, dtype=object),
                     ("small", "large"), right.astype(float), np.tile([0.001, 0.01], (n, 1)), responses,
                     source="<synthetic>")
    cascade = CascadeRouter(router="linear", encoder="hashing:dim=32", scorer_encoder="hashing:dim=32",
                            kappas=(1.0,), n_lams=9).fit(log.subset(np.arange(100)), log.subset(np.arange(100, n)))
    return cascade.save(tmp_path_factory.mktemp("cascade") / "ck")


@pytest.mark.parametrize("usage", HOSTILE_USAGE, ids=["negative", "1.8e308", "400-digits"])
def test_hostile_usage_is_charged_at_the_expected_cost_cascade_path(cascade_ckpt, backend, usage):
    backend.usage_json = usage
    app = create_app(cascade_ckpt, backends=backends_for({"small": backend, "large": backend}),
                     price_table=PRICES)
    with TestClient(app) as client:
        r = _chat(client)
        assert r.status_code == 200, r.text
        body = _strict(r.text)
        calls = body["usage"]["routecast_cascade"]["calls"]
        expected = app.state.server.runtime.expected_costs
        assert [c["cost_usd"] for c in calls] == pytest.approx([expected[c["model"]] for c in calls])
        assert body["usage"]["routecast_cost_usd"] == pytest.approx(sum(expected[c["model"]] for c in calls))
        assert body["usage"]["routecast_cost_usd"] > 0
        assert _implausible(client) == len(calls)


# ----------------------------------------------------------------------------- 5. breaker fallbacks
def _fallbacks(client) -> dict[str, float]:
    return {line.split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
            if line.startswith("routecast_fallbacks_total{")}


def test_a_fallback_past_an_open_breaker_is_reported(ckpt, backend, tmp_path):
    dead = FakeBackend("A", mode="500")
    log = tmp_path / "decisions.sqlite"
    backends = backends_for({"large": dead, "medium": backend, "small": backend})
    app = create_app(ckpt, {"breaker_failures": 1, "breaker_cooldown_s": 60}, backends=backends, decision_log=log)
    try:
        with TestClient(app) as client:
            first = _chat(client, routecast={"lam": 0})  # large fails (500): the breaker opens
            skipped = [_chat(client, content=f"{MATH} [{i}]", routecast={"lam": 0}) for i in range(4)]
            fallbacks = _fallbacks(client)
    finally:
        dead.stop()
    assert first.headers["x-routecast-fallback"] == "large->medium"
    assert dead.counts["large"] == 0 and backend.counts["medium"] == 5  # nothing more was sent to large
    for r in skipped:
        assert r.status_code == 200 and r.headers["x-routecast-model"] == "medium"
        assert r.headers["x-routecast-fallback"] == "large->medium"  # the skipped first choice is in the chain
    assert fallbacks == {'routecast_fallbacks_total{from_model="large",to_model="medium"}': 5.0}
    records = {r["request_id"]: r for r in DecisionLog(log).records()}
    for r in skipped:
        record = records[r.headers["x-routecast-request-id"]]
        assert (record["fallback"], record["chosen"]) == ("large->medium", "medium")


# ----------------------------------------------------------------------------- 4. a bad cascade answer
def test_a_cascade_answer_with_a_lone_surrogate_is_a_charged_and_logged_502(cascade_ckpt, backend, tmp_path):
    backend.content = "\ud800"  # valid JSON ("\ud800"), not valid Unicode: the answer scorer cannot read it
    log = tmp_path / "decisions.sqlite"
    app = create_app(cascade_ckpt, {"spend_budget_usd": 1e-6}, decision_log=log,
                     backends=backends_for({"small": backend, "large": backend}))
    with TestClient(app) as client:
        r = _chat(client)
        assert r.status_code == 502, r.text
        error = r.json()["error"]
        assert error["code"] == "bad_backend_answer" and error["type"] == "backend_error"
        called = r.headers["x-routecast-cascade-calls"]
        assert f"model {called!r}" in error["message"] and "request" not in error["message"]
        assert app.state.server.limits.spent("anonymous") == pytest.approx(
            app.state.server.runtime.expected_costs[called])  # the call is paid for
        again = _chat(client)
        assert again.status_code == 429 and again.json()["error"]["code"] == "budget_exceeded"
        metrics = client.get("/metrics").text
    assert f'routecast_backend_errors_total{{kind="bad_answer",model="{called}"}} 1.0' in metrics
    (record,) = DecisionLog(log).records()
    assert record["status"] == 502 and record["chosen"] == called and record["realised_cost"] > 0
    assert record["extra"]["cascade"]["failure"] == f"{called} failed: bad_answer"


# ----------------------------------------------------------------------------- 7. conversation ids
def test_huge_conversation_ids_are_hashed_and_the_sticky_table_is_bounded(ckpt, backend, tmp_path):
    from routecast.serving.conversations import MAX_ID_CHARS, ConversationMemory

    log = tmp_path / "decisions.sqlite"
    app = create_app(ckpt, decision_log=log, backends=backends_for({m: backend for m in MODELS}))
    users = [f"{i}-" + "u" * 900_000 for i in range(6)]  # 900 KB each, all distinct
    with TestClient(app) as client:
        first = [_chat(client, user=u, routecast={"lam": 0}) for u in users]
        # the same user again, on a prompt that routes elsewhere: still sticky to its first model
        again = _chat(client, content="Say hello to Ana in a cheerful way", user=users[0])
        memory = app.state.server.conversations
    assert all(r.status_code == 200 for r in first) and again.headers["x-routecast-sticky"] == "1"
    assert again.headers["x-routecast-model"] == first[0].headers["x-routecast-model"]
    assert memory.size_bytes < 10_000  # six entries of a hashed id each, not 5.4 MB
    ids = {r["conversation_id"] for r in DecisionLog(log).records()}
    assert len(ids) == 6 and all(i.startswith("sha256:") and len(i) <= MAX_ID_CHARS for i in ids)
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 1_000_000  # not 5.4 MB of ids

    table = ConversationMemory(capacity=1000, max_bytes=1000)
    for i in range(50):
        table.remember(f"conversation-{i}", "large")
    assert len(table) < 50 and table.size_bytes <= 1000 and table.get("conversation-49") == "large"


# ----------------------------------------------------------------------------- 9. minor
def test_a_huge_unknown_request_id_is_not_echoed_whole(ckpt, backend, tmp_path):
    app = create_app(ckpt, decision_log=tmp_path / "d.sqlite", backends=backends_for({m: backend for m in MODELS}))
    with TestClient(app) as client:
        r = client.post("/v1/feedback", json={"request_id": "x" * 900_000, "score": 1})
        model = client.post("/v1/chat/completions", json={"model": "m" * 900_000, "messages": [{"role": "user",
                                                                                                 "content": "hi"}]})
    assert model.status_code == 404 and len(model.content) < 1000 and "(900002 characters)" in model.text
    assert r.status_code == 400 and len(r.content) < 1000
    assert "unknown request id 'xxxx" in r.json()["error"]["message"] and "(900002 characters)" in r.text


def test_route_on_a_cascade_checkpoint_routes_by_its_first_call(cascade_ckpt, tmp_path, capsys):
    from routecast.cli import main

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"what is {i} plus {i}?"}) + "\n" for i in range(5)))
    with pytest.raises(SystemExit) as done:
        main(["route", str(cascade_ckpt), "-i", str(src), "-o", str(out)])
    printed = capsys.readouterr()
    assert done.value.code == 0, printed.err
    assert "routed 5 prompts" in printed.out and "a cascade checkpoint: each decision is its first call" in printed.out
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["id"] for d in decisions] == [f"q{i}" for i in range(5)]
    assert all(d["model"] in ("small", "large") for d in decisions)


def test_ctrl_c_on_route_says_so_in_one_clean_line(ckpt, tmp_path):
    from routecast.errors import RoutecastError
    from routecast.serving.batch import route_file
    from routecast.serving.runtime import load

    class CtrlC:
        def __init__(self, runtime):
            self.models, self.manifest_sha256, self.inner = runtime.models, runtime.manifest_sha256, runtime
            self.calls = 0

        def route(self, texts, **kwargs):
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt
            return self.inner.route(texts, **kwargs)

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"hello {i}"}) + "\n" for i in range(6)))
    with pytest.raises(RoutecastError, match=r"interrupted \(Ctrl-C\) after routing 2 of 6 prompts") as err:
        route_file(CtrlC(load(ckpt)), src, tmp_path / "out.jsonl", batch_size=2)
    assert "()" not in str(err.value) and "\n" not in str(err.value)
