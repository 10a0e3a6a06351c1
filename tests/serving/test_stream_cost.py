"""A streamed answer costs what the same answer costs as JSON (issue 25, item 3): one definition -
the backend's token usage priced by the price table, else the router's expected cost - for the
``x-routecast-cost-usd`` header, ``usage.routecast_cost_usd``, the key's spend and the decision log."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from routecast.serving.app import create_app
from routecast.serving.stream_usage import priced_stream
from tests._support.serving import backends_for, quality_checkpoint

MATH = "Solve for x: 3x + 4 = 10"
PRICES = {"small": [1.0, 2.0], "medium": [10.0, 20.0], "large": [100.0, 200.0]}
#: the fake backend reports 1 prompt and 1 completion token: (100 + 200) / 1e6 USD on 'large'
REALISED = 3e-4


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return quality_checkpoint(tmp_path_factory.mktemp("stream-cost") / "ck")


def _app(ckpt, backend, tmp_path, prices):
    return create_app(ckpt, {"spend_budget_usd": 100.0}, price_table=prices, decision_log=tmp_path / "dl.sqlite",
                      backends=backends_for({m: backend for m in PRICES}))


def _chat(client, **extra):
    return client.post("/v1/chat/completions", json={"model": "router:quality", **extra,
                                                     "messages": [{"role": "user", "content": MATH}]})


def _events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data: {")]


def test_stream_and_json_answers_report_and_charge_the_same_cost(ckpt, backend, tmp_path):
    from routecast.data.decision_log import DecisionLog

    with TestClient(_app(ckpt, backend, tmp_path, PRICES)) as client:
        limits = client.app.state.server.limits
        whole = _chat(client)
        assert whole.headers["x-routecast-model"] == "large"
        assert float(whole.headers["x-routecast-cost-usd"]) == pytest.approx(REALISED)
        assert whole.json()["usage"]["routecast_cost_usd"] == pytest.approx(REALISED)
        spent = limits.spent("anonymous")
        assert spent == pytest.approx(REALISED)

        streamed = _chat(client, stream=True, stream_options={"include_usage": True})
        assert streamed.status_code == 200 and streamed.headers["x-routecast-model"] == "large"
        usage = _events(streamed.text)[-1]["usage"]
        assert usage["routecast_cost_usd"] == pytest.approx(REALISED)
        assert usage["routecast_request_id"] == streamed.headers["x-routecast-request-id"]
        assert usage["prompt_tokens"] == 1 and usage["completion_tokens"] == 1
        # the head is sent before the usage exists: no header that the usage could contradict
        assert "x-routecast-cost-usd" not in streamed.headers
        assert limits.spent("anonymous") - spent == pytest.approx(REALISED)

        # a client that asked for no usage chunk gets none, and is charged the same
        spent = limits.spent("anonymous")
        quiet = _chat(client, stream=True)
        events = _events(quiet.text)
        assert events and all("usage" not in e or e["usage"] is None for e in events)
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == "fake:large"
        assert limits.spent("anonymous") - spent == pytest.approx(REALISED)
        ids = [r.headers["x-routecast-request-id"] for r in (whole, streamed, quiet)]
    with DecisionLog(tmp_path / "dl.sqlite") as log:
        rows = {row["request_id"]: row for row in log.records()}
    assert [rows[i]["realised_cost"] for i in ids] == pytest.approx([REALISED] * 3)


def test_without_a_price_table_both_carry_the_same_expected_cost_header(ckpt, backend, tmp_path):
    with TestClient(_app(ckpt, backend, tmp_path, None)) as client:
        whole = _chat(client)
        streamed = _chat(client, stream=True, stream_options={"include_usage": True})
    assert whole.headers["x-routecast-cost-usd"] == streamed.headers["x-routecast-cost-usd"]
    assert float(whole.headers["x-routecast-cost-usd"]) == pytest.approx(0.01)  # large's expected cost
    assert _events(streamed.text)[-1]["usage"]["routecast_cost_usd"] == pytest.approx(0.01)


def test_the_usage_event_is_found_across_chunk_boundaries():
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    raw = (b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
           + f"data: {json.dumps(usage)}\n\n".encode() + b"data: [DONE]\n\n")
    settled = []

    async def chunks():
        for i in range(0, len(raw), 7):  # events cut anywhere
            yield raw[i:i + 7]

    async def relay(keep):
        return b"".join([c async for c in priced_stream(
            chunks(), price=lambda u: None if u is None else u["prompt_tokens"] + 10 * u["completion_tokens"],
            request_id="rc-1", keep_usage=keep, on_end=settled.append)])

    kept = asyncio.run(relay(True))
    assert json.loads(kept.split(b"\n\n")[1][5:])["usage"] == {"prompt_tokens": 3, "completion_tokens": 4,
                                                               "routecast_cost_usd": 43,
                                                               "routecast_request_id": "rc-1"}
    dropped = asyncio.run(relay(False))
    assert dropped == b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: [DONE]\n\n'
    assert settled == [43, 43]
