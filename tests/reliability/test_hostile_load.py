"""Issue 26 under load: budgets with many chats in flight, and a server without keys that
half-sent bodies used to stall. Real uvicorn servers and raw sockets on 127.0.0.1, bounded."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from routecast.serving.app import create_app
from tests._support.fake_backend import FakeBackend
from tests._support.serving import ServerThread, backends_for, make_checkpoint, serving

MATH = "Solve for x: 3x + 4 = 10"  # routed to 'large' (expected cost 0.01, the dearest model) at lam=0
LARGE_USD = 0.01


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("hostile-load") / "ck")


async def _in_flight(url: str, n: int) -> list[tuple[int, float]]:
    """(status, charged USD) of ``n`` chats sent at once."""
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        async def one(i):
            r = await client.post("/v1/chat/completions", json={
                "model": "router", "routecast": {"lam": 0},
                "messages": [{"role": "user", "content": f"{MATH} [{i}]"}]})
            assert r.status_code in (200, 429), r.text
            return r.status_code, float(r.headers.get("x-routecast-cost-usd", 0))
        return list(await asyncio.gather(*(one(i) for i in range(n))))


# ----------------------------------------------------------------------------- 10. budgets in flight
@pytest.mark.parametrize("mode", ["settle", "reserve"])
def test_sixteen_chats_in_flight_against_a_small_budget(ckpt, mode):
    budget = 0.025  # 2.5 chats
    slow = FakeBackend("S", mode="hang", hang_seconds=0.5)  # every chat is in flight at once
    settings = {"spend_budget_usd": budget, "budget_mode": mode, "max_concurrent_per_key": 32}
    try:
        with serving(ckpt, backends_for({m: slow for m in ("small", "medium", "large")}, timeout=5.0),
                     settings) as server:
            results = asyncio.run(_in_flight(server.url, 16))
            limits = server.server.config.app.state.server.limits
    finally:
        slow.stop()
    spent = limits.spent("anonymous")  # the server has stopped: every request has released its hold
    statuses = [status for status, _ in results]
    answered = statuses.count(200)
    assert set(statuses) <= {200, 429} and spent == pytest.approx(sum(usd for _, usd in results))
    if mode == "settle":  # the documented overshoot: every chat in flight passed the check
        assert answered == 16 and spent > budget + LARGE_USD
    else:  # held while in flight: at most one chat beyond the budget
        assert 2 <= answered and spent <= budget + LARGE_USD


def test_budget_mode_is_checked_and_a_serve_option():
    from routecast.errors import ConfigError
    from routecast.serving.server_config import ServerSettings

    assert ServerSettings.from_any({"budget_mode": "reserve"}).budget_mode == "reserve"
    assert ServerSettings().budget_mode == "settle"
    with pytest.raises(ConfigError, match="budget_mode must be one of settle, reserve, got 'hold'"):
        ServerSettings.from_any({"budget_mode": "hold"})


# ----------------------------------------------------------------------------- 6. stalls without keys
def _half_sent_bodies(port: int, n: int) -> list:
    """``n`` connections that sent a chat's head and 10 of its 200 body bytes, then nothing."""
    import socket

    socks = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 200\r\n\r\n{\"model\": ")
        socks.append(sock)
    return socks


def test_half_sent_bodies_hold_no_routing_slot(ckpt):
    import time

    fast = FakeBackend("F")
    settings = {"body_timeout_s": 4.0, "max_concurrent_per_key": 8, "slot_wait_s": 4.0}
    try:
        with serving(ckpt, backends_for({m: fast for m in ("small", "medium", "large")}), settings) as server:
            socks = _half_sent_bodies(server.port, 8)  # as many as the anonymous key's slots
            try:
                time.sleep(0.3)
                start = time.perf_counter()
                r = httpx.post(server.url + "/v1/chat/completions", timeout=10,
                               json={"model": "router", "messages": [{"role": "user", "content": MATH}]})
                waited = time.perf_counter() - start
            finally:
                for sock in socks:
                    sock.close()
    finally:
        fast.stop()
    assert r.status_code == 200 and waited < 2.0  # not the 4 s body timeout of the stalled requests


def test_without_keys_slots_are_per_client_address(ckpt):
    slow = FakeBackend("S", mode="hang", hang_seconds=1.5)
    settings = {"max_concurrent_per_key": 2, "slot_wait_s": 0.3}
    chat = {"model": "router", "messages": [{"role": "user", "content": MATH}]}

    async def drive(url):
        other_address = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=url, timeout=10, transport=other_address) as hog, \
                httpx.AsyncClient(base_url=url, timeout=10) as client:
            held = [asyncio.ensure_future(hog.post("/v1/chat/completions", json=chat)) for _ in range(2)]
            await asyncio.sleep(0.4)  # both of 127.0.0.2's slots are taken by chats on a slow backend
            third = await hog.post("/v1/chat/completions", json=chat)
            mine = await client.post("/v1/route", json={"prompt": MATH})
            return [(await h).status_code for h in held], third, mine.status_code

    try:
        with serving(ckpt, backends_for({m: slow for m in ("small", "medium", "large")}, timeout=5.0),
                     settings) as server:
            held, third, mine = asyncio.run(drive(server.url))
    finally:
        slow.stop()
    assert held == [200, 200] and mine == 200  # 127.0.0.1 is not held up by 127.0.0.2
    assert third.status_code == 429 and third.json()["error"]["code"] == "concurrency_limit"


def test_hostile_usage_reports_cannot_lift_a_reserved_budget(ckpt):
    """The probe's attack (a backend reporting ``prompt_tokens: -1000000000`` with a price table)
    with 16 chats in flight: spend stays within the budget plus one chat in reserve mode."""
    budget = 0.025
    hostile = FakeBackend("H", mode="hang", hang_seconds=0.3)
    hostile.usage_json = '{"prompt_tokens": -1000000000, "completion_tokens": 1, "total_tokens": 1}'
    settings = {"spend_budget_usd": budget, "budget_mode": "reserve", "max_concurrent_per_key": 32}
    prices = {m: [1000.0, 1000.0] for m in ("small", "medium", "large")}
    app = create_app(ckpt, settings, price_table=prices,
                     backends=backends_for({m: hostile for m in ("small", "medium", "large")}, timeout=5.0))
    try:
        with ServerThread(app) as server:
            first = asyncio.run(_in_flight(server.url, 16))
            later = asyncio.run(_in_flight(server.url, 16))  # a negative charge would have reopened the budget
    finally:
        hostile.stop()
    spent = app.state.server.limits.spent("anonymous")
    assert 0 < spent <= budget + LARGE_USD and spent == pytest.approx(sum(usd for _, usd in first + later))
    assert [status for status, _ in later] == [429] * 16
