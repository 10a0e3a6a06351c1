"""The server running a cascade router checkpoint (routecast.serving.cascade_chat): call, score,
maybe call again, return the chosen answer; only a known-last call streams.

A tiny CascadeRouter is trained on the built-in routellm_strong_weak log (its GSM8K prompts carry
both models' responses) with the hashing encoder. Fake OpenAI-compatible backends on 127.0.0.1
answer every prompt with the logged response, so the live cascade must do what the offline
simulation of the same checkpoint does; the two test prompts are picked from that simulation at
one lam: on one the cascade stops after the first call, on the other it calls the second model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from routecast.serving.app import create_app
from routecast.serving.runtime_protocol import ServingRuntime
from tests._support.fake_chat import FakeChat
from tests._support.serving import ServerThread, backends_for

ENC = "hashing:dim=64"
KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint path, cascade, facts of the two picked prompts)."""
    from routecast.cascade.cascade_router import CascadeRouter
    from routecast.data import load_log

    log = load_log("routellm_strong_weak")
    both = np.array([all(isinstance(r, str) and r.strip() for r in row) for row in log.responses])
    clean = np.array([p == p.strip() and 0 < len(p) <= 2000 for p in log.prompts])
    rows = np.flatnonzero(both & clean)
    rows = np.sort(np.random.default_rng(0).choice(rows, size=240, replace=False))
    log = log.subset(rows)
    train, val, test = log.subset(np.arange(120)), log.subset(np.arange(120, 180)), log.subset(np.arange(180, 240))
    cascade = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0, 1.0), n_lams=25,
                            n_folds=2).fit(train, val)
    assert cascade.max_calls_ == 2 and len(cascade.pool_) == 2
    sim = cascade.simulate(test, cascade.lams_)
    n_calls = np.vectorize(lambda m: bin(int(m)).count("1"))(sim["called"])
    balance = np.minimum((n_calls == 1).sum(axis=1), (n_calls == 2).sum(axis=1))
    a = int(np.argmax(balance))
    assert balance[a] > 0, "no lam stops on some prompts and escalates on others"
    lam = float(cascade.lams_[a])
    one, two = int(np.flatnonzero(n_calls[a] == 1)[0]), int(np.flatnonzero(n_calls[a] == 2)[0])
    cascade.add_operating_point("picked", lam=lam)
    path = cascade.save(tmp_path_factory.mktemp("cascade") / "ck")
    answers = {(test.prompts[i], m): test.responses[i, test.model_index(m)] for i in (one, two) for m in cascade.pool_}
    expect = {}
    for name, i in (("one", one), ("two", two)):
        out = cascade.run(test.prompts[i], lambda model, prompt: answers[(prompt, model)], lam=lam)
        expect[name] = {"prompt": test.prompts[i], "calls": out.models_called, "chosen": out.model,
                        "answer": out.answer}
    assert len(expect["one"]["calls"]) == 1 and len(expect["two"]["calls"]) == 2
    return path, cascade, {"lam": lam, "answers": answers, **expect}


@pytest.fixture
def fake(trained):
    _, _, facts = trained
    backend = FakeChat(lambda text, model: facts["answers"][(text, model)])
    yield backend
    backend.stop()


def _app(trained, fake, **kwargs):
    path, cascade, _ = trained
    return create_app(path, backends=backends_for({m: fake.base_url for m in cascade.pool_}), **kwargs)


def _ask(client, facts, which, *, stream=False, model="router", knobs=True, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": facts[which]["prompt"]}], "stream": stream,
            **extra}
    if knobs:
        body["routecast"] = {"lam": facts["lam"]}
    return client.post("/v1/chat/completions", json=body)


def _sse_content(text: str) -> tuple[str, list[dict]]:
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return content, chunks


def test_stops_after_one_call_on_one_prompt_and_escalates_on_another(trained, fake):
    _, cascade, facts = trained
    costs = dict(zip(cascade.pool_, cascade.costs_))
    with TestClient(_app(trained, fake, settings={"spend_budget_usd": 1000.0})) as client:
        r = _ask(client, facts, "one")
        assert r.status_code == 200, r.text
        first = facts["one"]["calls"][0]
        assert fake.models_called() == [first] and [s for _, s, _ in fake.calls] == [False]
        assert r.json()["choices"][0]["message"]["content"] == facts["answers"][(facts["one"]["prompt"], first)]
        usage = r.json()["usage"]
        assert usage["routecast_cost_usd"] == pytest.approx(costs[first])
        assert [c["model"] for c in usage["routecast_cascade"]["calls"]] == [first]
        assert r.headers["x-routecast-model"] == first and r.headers["x-routecast-cascade-calls"] == first
        assert float(r.headers["x-routecast-lam"]) == pytest.approx(facts["lam"], rel=1e-5)
        assert "x-routecast-cascade-stream" not in r.headers and "x-routecast-cascade-fallback" not in r.headers

        fake.calls.clear()
        r = _ask(client, facts, "two")
        assert r.status_code == 200, r.text
        calls = facts["two"]["calls"]
        assert fake.models_called() == calls and [s for _, s, _ in fake.calls] == [False, False]
        assert r.json()["choices"][0]["message"]["content"] == facts["two"]["answer"]
        total = costs[calls[0]] + costs[calls[1]]
        assert r.json()["usage"]["routecast_cost_usd"] == pytest.approx(total)  # every call is paid for
        assert float(r.headers["x-routecast-cost-usd"]) == pytest.approx(total, rel=1e-5)
        assert r.headers["x-routecast-cascade-calls"] == ",".join(calls)
        per_call = [float(x) for x in r.headers["x-routecast-cascade-call-costs"].split(",")]
        assert per_call == pytest.approx([costs[calls[0]], costs[calls[1]]], rel=1e-5)
        assert len(r.headers["x-routecast-cascade-call-latency-ms"].split(",")) == 2
        assert r.headers["x-routecast-model"] == facts["two"]["chosen"]
        posterior = r.json()["usage"]["routecast_cascade"]["posterior"]
        assert set(posterior) == set(calls) and max(posterior, key=posterior.get) == facts["two"]["chosen"]
        assert float(r.headers["x-routecast-cascade-posterior"]) == pytest.approx(posterior[facts["two"]["chosen"]],
                                                                                 rel=1e-5)
        # the key's spend budget counts both requests' every call
        spent = client.app.state.server.limits.spent("anonymous")
        assert spent == pytest.approx(costs[facts["one"]["calls"][0]] + total)


def test_a_named_operating_point_and_the_route_endpoint(trained, fake):
    _, cascade, facts = trained
    with TestClient(_app(trained, fake)) as client:
        r = _ask(client, facts, "two", model="router:picked", knobs=False)
        assert r.status_code == 200, r.text
        assert r.headers["x-routecast-operating-point"] == "picked"
        assert fake.models_called() == facts["two"]["calls"]
        r = client.post("/v1/route", json={"prompt": facts["two"]["prompt"], "lam": facts["lam"]})
        decision = r.json()["decisions"][0]
        assert r.json()["router_type"] == "cascade-routing" and decision["model"] == facts["two"]["calls"][0]
        assert decision["first_models"] == [decision["model"]]  # this plan calls one model at a time
        assert set(decision["ranking"]) == set(cascade.pool_)
        assert client.get("/v1/router").json()["models"] == list(cascade.pool_)
        r = _ask(client, facts, "two", model="router:nope", knobs=False)
        assert r.status_code == 400 and "picked" in r.json()["error"]["message"]


def test_streaming_only_the_known_last_call_streams(trained, fake):
    _, _, facts = trained
    with TestClient(_app(trained, fake)) as client:
        # two calls: the second is the last possible one (max_calls), so it streams from the backend
        r = _ask(client, facts, "two", stream=True)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        calls = facts["two"]["calls"]
        assert fake.calls == [(calls[0], False, facts["two"]["prompt"]), (calls[1], True, facts["two"]["prompt"])]
        content, chunks = _sse_content(r.text)
        assert content == facts["answers"][(facts["two"]["prompt"], calls[1])]
        assert len(chunks) == 3  # the backend's two content chunks and its finish chunk, relayed
        assert r.headers["x-routecast-cascade-stream"] == "backend" and r.headers["x-routecast-model"] == calls[1]

        # one call that might have been followed by another: made whole, then replayed as SSE
        fake.calls.clear()
        r = _ask(client, facts, "one", stream=True, stream_options={"include_usage": True})
        first = facts["one"]["calls"][0]
        assert fake.calls == [(first, False, facts["one"]["prompt"])]
        content, chunks = _sse_content(r.text)
        assert content == facts["answers"][(facts["one"]["prompt"], first)]
        assert r.headers["x-routecast-cascade-stream"] == "replay"
        assert chunks[1]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["usage"]["routecast_cost_usd"] == pytest.approx(float(r.headers["x-routecast-cost-usd"]),
                                                                          rel=1e-5)


def test_backend_failure_mid_cascade_returns_the_best_answer_so_far(trained, fake):
    _, cascade, facts = trained
    calls = facts["two"]["calls"]
    fake.fail[calls[1]] = 500
    with TestClient(_app(trained, fake, settings={"spend_budget_usd": 1000.0})) as client:
        r = _ask(client, facts, "two")
        assert r.status_code == 200, r.text
        assert fake.models_called() == calls
        assert r.json()["choices"][0]["message"]["content"] == facts["answers"][(facts["two"]["prompt"], calls[0])]
        assert r.headers["x-routecast-cascade-fallback"] == f"best-so-far; {calls[1]} failed: backend_unavailable"
        cost = dict(zip(cascade.pool_, cascade.costs_))[calls[0]]
        assert r.json()["usage"]["routecast_cost_usd"] == pytest.approx(cost)  # the failed call produced nothing
        assert client.app.state.server.limits.spent("anonymous") == pytest.approx(cost)
        # the stream falls back the same way: the failed last call never started, the best answer is replayed
        r = _ask(client, facts, "two", stream=True)
        content, _ = _sse_content(r.text)
        assert content == facts["answers"][(facts["two"]["prompt"], calls[0])]
        assert r.headers["x-routecast-cascade-stream"] == "replay"


def test_first_call_failure_falls_back_like_the_router_path(trained, fake):
    _, cascade, facts = trained
    first = facts["one"]["calls"][0]
    other = next(m for m in cascade.pool_ if m != first)
    fake.fail[first] = 500
    with TestClient(_app(trained, fake, settings={"spend_budget_usd": 1000.0})) as client:
        r = _ask(client, facts, "one")
        assert r.status_code == 200, r.text
        assert fake.models_called()[:2] == [first, other]
        assert r.headers["x-routecast-fallback"] == f"{first}->{other}"
        assert r.json()["choices"][0]["message"]["content"] == facts["answers"][(facts["one"]["prompt"], other)]
        assert r.headers["x-routecast-model"] == other
        fake.fail[other] = 500  # nothing answers at all: the router path's 502, nothing charged
        spent = client.app.state.server.limits.spent("anonymous")
        r = _ask(client, facts, "one")
        assert r.status_code == 502 and r.json()["error"]["code"] == "backend_unavailable"
        assert r.headers["x-routecast-request-id"].startswith("rc-")
        assert client.app.state.server.limits.spent("anonymous") == pytest.approx(spent)


def test_decision_log_has_one_row_with_every_call(trained, fake, tmp_path):
    from routecast.data.decision_log import DecisionLog

    _, cascade, facts = trained
    db = tmp_path / "decisions.sqlite"
    with TestClient(_app(trained, fake, decision_log=db)) as client:
        r = _ask(client, facts, "two")
        request_id = r.headers["x-routecast-request-id"]
        assert client.post("/v1/feedback", json={"request_id": request_id, "score": 1.0}).status_code == 200
    with DecisionLog(db) as log:
        rows = list(log.records())
        record = log.get(request_id)
    assert len(rows) == 1
    assert record["chosen"] == facts["two"]["chosen"] and record["status"] == 200 and record["score"] == 1.0
    assert [c["model"] for c in record["extra"]["cascade"]["calls"]] == facts["two"]["calls"]
    costs = dict(zip(cascade.pool_, cascade.costs_))
    assert record["realised_cost"] == pytest.approx(sum(costs[m] for m in facts["two"]["calls"]))
    assert set(record["predicted"]) == set(cascade.pool_)


def test_auth_and_body_limits_apply_unchanged(trained, fake):
    _, _, facts = trained
    with TestClient(_app(trained, fake, api_keys=[KEY], settings={"max_body_bytes": 4000})) as client:
        assert _ask(client, facts, "one").status_code == 401
        assert fake.calls == []
        big = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                          json={"model": "router", "messages": [{"role": "user", "content": "x" * 5000}]})
        assert big.status_code == 413
        body = {"model": "router", "messages": [{"role": "user", "content": facts["one"]["prompt"]}],
                "routecast": {"lam": facts["lam"]}, "n": 2}
        r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"}, json=body)
        assert r.status_code == 400 and "'n'" in r.json()["error"]["message"]
        assert fake.calls == []


def test_serve_detects_a_cascade_checkpoint_and_pins_it(trained, fake, tmp_path):
    from routecast.errors import CheckpointError
    from routecast.core.checkpoint import manifest_sha256
    from routecast.serving.serve import build_server

    path, cascade, facts = trained
    backends = tmp_path / "backends.json"
    backends.write_text(json.dumps(backends_for({m: fake.base_url for m in cascade.pool_})))
    app, _ = build_server(path, {"backends": str(backends), "expect_sha256": manifest_sha256(path)})
    with TestClient(app) as client:
        assert client.get("/v1/router").json()["router_type"] == "cascade-routing"
        assert _ask(client, facts, "one").status_code == 200
    with pytest.raises(CheckpointError, match="pinned"):
        build_server(path, {"backends": str(backends), "expect_sha256": "0" * 64})
    from routecast.core.signing import generate_keypair

    generate_keypair(tmp_path / "key.pem", tmp_path / "key.pub")
    with pytest.raises(CheckpointError, match=r"manifest\.sig: missing; a trusted key was given"):
        build_server(path, {"backends": str(backends), "trusted_key": str(tmp_path / "key.pub")})


def test_real_server_with_the_openai_client(trained, fake):
    from openai import OpenAI

    _, _, facts = trained
    with ServerThread(_app(trained, fake)) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=20)
        messages = [{"role": "user", "content": facts["two"]["prompt"]}]
        raw = client.chat.completions.with_raw_response.create(model="router", messages=messages,
                                                               extra_body={"routecast": {"lam": facts["lam"]}})
        completion = raw.parse()
        assert completion.choices[0].message.content == facts["two"]["answer"]
        assert raw.headers["x-routecast-cascade-calls"] == ",".join(facts["two"]["calls"])
        assert completion.usage.model_extra["routecast_cost_usd"] > 0
        fake.calls.clear()
        stream = client.chat.completions.create(model="router", messages=messages, stream=True,
                                                extra_body={"routecast": {"lam": facts["lam"]}})
        content = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        last = facts["two"]["calls"][1]
        assert content == facts["answers"][(facts["two"]["prompt"], last)]
        assert [s for _, s, _ in fake.calls] == [False, True]


def test_the_step_interface_is_the_run_loop(trained):
    _, cascade, facts = trained
    state = cascade.start(facts["two"]["prompt"], lam=facts["lam"])
    first = cascade.next_model(state)
    assert first == facts["two"]["calls"][0] and not cascade.is_last_call(state, first)
    cascade.observe(state, first, facts["answers"][(facts["two"]["prompt"], first)])
    second = cascade.next_model(state)
    assert second == facts["two"]["calls"][1] and cascade.is_last_call(state, second)
    with pytest.raises(Exception, match="already called"):
        cascade.observe(state, first, "again")
    cascade.observe(state, second, facts["answers"][(facts["two"]["prompt"], second)])
    assert cascade.next_model(state) is None
    out = cascade.outcome(state)
    assert out.model == facts["two"]["chosen"] and out.models_called == facts["two"]["calls"]
    assert cascade.lam_for(operating_point="picked") == pytest.approx(facts["lam"])


def test_a_relayed_stream_costs_what_the_same_calls_cost_as_json(trained, fake):
    """Issue 25 item 3 for cascades: the last call relayed as a stream is priced from its usage chunk
    like a JSON call (not at the expected cost), and the chunk carries the request's total."""
    _, cascade, facts = trained
    prices = {m: [1.0 + j, 3.0 + j] for j, m in enumerate(cascade.pool_)}
    calls = facts["two"]["calls"]
    # FakeChat reports 10 prompt and 5 completion tokens per answer
    total = sum((10 * prices[m][0] + 5 * prices[m][1]) / 1e6 for m in calls)
    with TestClient(_app(trained, fake, settings={"spend_budget_usd": 1000.0}, price_table=prices)) as client:
        assert isinstance(client.app.state.server.runtime, ServingRuntime)  # served through the one protocol
        limits = client.app.state.server.limits
        whole = _ask(client, facts, "two")
        assert whole.json()["usage"]["routecast_cost_usd"] == pytest.approx(total)
        assert float(whole.headers["x-routecast-cost-usd"]) == pytest.approx(total, rel=1e-5)
        assert limits.spent("anonymous") == pytest.approx(total)
        streamed = _ask(client, facts, "two", stream=True, stream_options={"include_usage": True})
        assert streamed.headers["x-routecast-cascade-stream"] == "backend"
        _, chunks = _sse_content(streamed.text)
        assert chunks[-1]["usage"]["routecast_cost_usd"] == pytest.approx(total)
        assert "x-routecast-cost-usd" not in streamed.headers  # sent before the usage existed
        assert limits.spent("anonymous") == pytest.approx(2 * total)
        quiet = _ask(client, facts, "two", stream=True)  # no usage asked for: none relayed, charged the same
        _, chunks = _sse_content(quiet.text)
        assert len(chunks) == 3 and all("usage" not in c for c in chunks)
        assert limits.spent("anonymous") == pytest.approx(3 * total)
