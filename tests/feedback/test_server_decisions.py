"""The server's decision log, POST /v1/feedback, exploration with replayable propensities, and the
CLI path from the log to a bandit outcome log and an off-policy evaluation."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from routecast.data.decision_log import DecisionLog, text_hash
from routecast.serving.app import create_app
from routecast.serving.exploration import explored_choice, uniform_for
from tests._support.fake_backend import FakeBackend
from tests._support.serving import backends_for, make_checkpoint, prompts_of

MATH, CHAT = prompts_of("math", 12, seed=5), prompts_of("chat", 12, seed=6)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("decisions") / "ck")


@pytest.fixture(scope="module")
def backend():
    fake = FakeBackend("fake")
    yield fake
    fake.stop()


def _app(ckpt, backend, log, **settings):
    return create_app(ckpt, settings or None, decision_log=log, log_text=settings.pop("log_text", True),
                      backends=backends_for({"small": backend, "medium": backend, "large": backend}),
                      api_keys=["key-0123456789abcdef"])


def _chat(client, content, **extra):
    return client.post("/v1/chat/completions", headers={"authorization": "Bearer key-0123456789abcdef"},
                       json={"model": "router", "messages": [{"role": "user", "content": content}], **extra})


def test_every_routed_request_is_logged_and_feedback_is_joined(ckpt, backend, tmp_path):
    path = tmp_path / "decisions.sqlite"
    auth = {"authorization": "Bearer key-0123456789abcdef"}
    with TestClient(_app(ckpt, backend, path)) as client:
        ids = [_chat(client, text, routecast={"lam": 30}).headers["x-routecast-request-id"]
               for text in (MATH[0], CHAT[0])]
        routed = client.post("/v1/route", json={"prompts": [MATH[1], CHAT[1]]}, headers=auth).json()
        assert client.post("/v1/feedback", json={"request_id": ids[0], "score": 1}).status_code == 401
        ok = client.post("/v1/feedback", json={"request_id": ids[0], "score": 0.75}, headers=auth)
        assert ok.status_code == 200 and ok.json()["status"] == "recorded"
        for body, message in [({"request_id": ids[0], "score": 0.5}, "already has feedback"),
                              ({"request_id": "rc-nope", "score": 0.5}, "unknown request id 'rc-nope'"),
                              ({"request_id": ids[1], "score": 1.5}, "must be a number in [0, 1]"),
                              ({"request_id": ids[1], "score": "1"}, "score: Input should be a valid number"),
                              ({"request_id": ids[1]}, "score: Field required")]:
            r = client.post("/v1/feedback", json=body, headers=auth)
            assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    records = {r["request_id"]: r for r in DecisionLog(path).records()}
    assert set(records) == {*ids, f"{routed['request_id']}-0", f"{routed['request_id']}-1"}
    math = records[ids[0]]
    assert (math["chosen"], math["status"], math["score"], math["propensity"], math["lam"]) == ("large", 200, 0.75,
                                                                                                 1.0, 30.0)
    assert math["key_id"] != "key-0123456789abcdef" and len(math["key_id"]) == 10  # the key's hash id, never the key
    assert math["text"] == MATH[0] and math["text_hash"] == text_hash(MATH[0])
    assert math["latency_ms"] > 0 and math["realised_cost"] == pytest.approx(0.01)
    assert math["ranking"][0] == "large" and set(math["predicted"]) == {"small", "medium", "large"}
    assert records[ids[1]]["chosen"] == "small" and records[ids[1]]["score"] is None


def test_text_is_only_hashed_by_default(ckpt, backend, tmp_path):
    path = tmp_path / "hashed.sqlite"
    with TestClient(_app(ckpt, backend, path, log_text=False)) as client:
        _chat(client, MATH[2])
    (record,) = DecisionLog(path).records()
    assert record["text"] is None and record["text_hash"] == text_hash(MATH[2])


def test_exploration_logs_propensities_that_replay(ckpt, backend, tmp_path):
    path = tmp_path / "explore.sqlite"
    with TestClient(_app(ckpt, backend, path, explore=0.6)) as client:
        answered = [_chat(client, t, routecast={"lam": 30}).headers for t in MATH[:8] + CHAT[:8]]
    records = list(DecisionLog(path).records())
    assert len(records) == 16
    from routecast.serving.runtime import load

    runtime = load(ckpt)
    for record, headers in zip(records, answered):
        decision = {"predicted_quality": record["predicted"], "lam": record["lam"]}  # replayed from the log
        model, propensity = explored_choice(decision, runtime.models, runtime.router.costs_, record["request_id"],
                                            epsilon=0.6)
        assert (model, propensity) == (record["chosen"], pytest.approx(record["propensity"]))
        assert headers["x-routecast-model"] == model
        # the greedy model keeps (1 - 0.6) + 0.6 / 3 = 0.6; any other model was drawn with 0.6 / 3 = 0.2
        assert propensity == pytest.approx(0.6 if model == _greedy(record) else 0.2)
        assert 0 <= uniform_for(record["request_id"]) < 1
    assert any(r["chosen"] != _greedy(r) for r in records)  # some requests explored


def _greedy(record):
    from routecast.core.policy import decide
    import numpy as np

    models = record["models"]
    quality = np.array([[record["predicted"][m] for m in models]])
    return models[int(decide(quality, np.array([0.0001, 0.001, 0.01]), record["lam"])[0])]


def test_cli_feedback_import_from_decisions_and_off_policy(ckpt, backend, tmp_path):
    from routecast.cli import app as cli

    path = tmp_path / "loop.sqlite"
    with TestClient(_app(ckpt, backend, path, explore=0.3)) as client:
        ids = [_chat(client, t, routecast={"lam": 30}).headers["x-routecast-request-id"] for t in MATH + CHAT]
    feedback = tmp_path / "scores.jsonl"
    feedback.write_text("".join(json.dumps({"request_id": rid, "score": 1.0 if i >= 12 else 0.5}) + "\n"
                                for i, rid in enumerate(ids)))
    runner = CliRunner()
    done = runner.invoke(cli, ["feedback", "import", str(feedback), "--decision-log", str(path)])
    assert done.exit_code == 0 and f"recorded {len(ids)} feedback scores" in done.output, done.output
    again = runner.invoke(cli, ["feedback", "import", str(feedback), "--decision-log", str(path)])
    assert again.exit_code == 2 and "row 1" in again.output and "already has feedback" in again.output
    out = tmp_path / "bandit.jsonl"
    done = runner.invoke(cli, ["data", "from-decisions", str(path), "--out", str(out)])
    assert done.exit_code == 0 and f"wrote {len(ids)} scored decisions" in done.output, done.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(ids) and all(0 < r["propensity"] <= 1 for r in rows)
    assert {r["prompt"] for r in rows} == set(MATH + CHAT)
    done = runner.invoke(cli, ["evaluate", "--off-policy", str(path), "--routers", str(ckpt), "--lam", "30",
                               "--n-boot", "50"])
    assert done.exit_code == 0, done.output
    assert f"{len(ids)} logged requests with feedback" in done.output and "| DR |" in done.output
