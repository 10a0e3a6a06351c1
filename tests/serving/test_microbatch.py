"""Request micro-batching: concurrent requests share router calls, never their answers.

Unit tests drive :class:`MicroBatcher` with a recording route function; the server test sends
concurrent requests to a real uvicorn server and checks that every answer equals the unbatched
decision for that prompt while the metrics show merged batches.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from routecast.errors import RoutingError
from routecast.serving.microbatch import MicroBatcher
from tests._support.serving import make_checkpoint, prompts_of, serving


class RecordingRoute:
    """A route function that remembers each call and answers with the text it was given."""

    def __init__(self, delay: float = 0.01, fail_on: str | None = None):
        self.calls: list[tuple[list[str], dict]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, texts, **knobs):
        with self.lock:
            self.calls.append((list(texts), dict(knobs)))
        time.sleep(self.delay)  # a router call takes time: later requests queue up meanwhile
        if self.fail_on is not None and self.fail_on in texts:
            raise RoutingError(f"cannot route {self.fail_on!r}")
        return [{"text": t, "knobs": dict(knobs)} for t in texts]


async def _submit_all(batcher, requests):
    return await asyncio.gather(*(batcher.submit(texts, **knobs) for texts, knobs in requests),
                                return_exceptions=True)


def _run(route, requests, **kwargs):
    async def main():
        batcher = MicroBatcher(route, **kwargs).start()
        try:
            return await _submit_all(batcher, requests)
        finally:
            await batcher.aclose()

    return asyncio.run(main())


def test_concurrent_requests_are_merged_and_answers_stay_with_their_request():
    route = RecordingRoute()
    requests = [([f"p{i}"], {}) for i in range(40)] + [([f"multi{j}" for j in range(5)], {})]
    answers = _run(route, requests, calibrated=False, max_batch=16)
    for (texts, _), answer in zip(requests, answers):
        assert [a["text"] for a in answer] == texts
    sizes = [len(texts) for texts, _ in route.calls]
    assert sum(sizes) == 45  # every prompt routed exactly once
    assert max(sizes) <= 16
    assert len(route.calls) < 41  # merged: fewer router calls than requests
    for texts, _ in route.calls:  # a multi-prompt request is never split across calls
        multi = [t for t in texts if t.startswith("multi")]
        assert multi in ([], [f"multi{j}" for j in range(5)])


def test_requests_with_different_knobs_are_never_merged():
    route = RecordingRoute()
    requests = [([f"a{i}"], {"lam": 1.0}) for i in range(10)] + [([f"b{i}"], {"lam": 2.0}) for i in range(10)]
    answers = _run(route, requests, calibrated=False)
    for (texts, knobs), answer in zip(requests, answers):
        assert answer == [{"text": texts[0], "knobs": knobs}]
    for texts, knobs in route.calls:
        assert {t[0] for t in texts} == ({"a"} if knobs == {"lam": 1.0} else {"b"})


def test_budget_on_uncalibrated_router_is_routed_alone_but_merged_when_calibrated():
    # an uncalibrated budget is met on the batch's own predictions: batch-mates would change it
    for calibrated, merged in ((False, False), (True, True)):
        route = RecordingRoute()
        requests = [([f"p{i}"], {"budget": 0.001}) for i in range(12)]
        answers = _run(route, requests, calibrated=calibrated)
        assert [a[0]["text"] for a in answers] == [f"p{i}" for i in range(12)]
        assert (max(len(t) for t, _ in route.calls) > 1) is merged
        if not merged:
            assert len(route.calls) == 12


def test_a_failing_batch_fails_its_requests_only_and_the_batcher_keeps_going():
    route = RecordingRoute(fail_on="bad")

    async def main():
        batcher = MicroBatcher(route, calibrated=False, max_wait_ms=20).start()
        try:
            first = await asyncio.gather(batcher.submit(["bad"]), batcher.submit(["x"], lam=3.0),
                                         return_exceptions=True)
            later = await batcher.submit(["fine"])
            return first, later
        finally:
            await batcher.aclose()

    (failed, other), later = asyncio.run(main())
    assert isinstance(failed, RoutingError) and "bad" in str(failed)
    assert other == [{"text": "x", "knobs": {"lam": 3.0}}]  # different knobs, different call: unaffected
    assert later == [{"text": "fine", "knobs": {}}]


def test_submit_before_start_and_bad_settings_are_refused():
    with pytest.raises(ValueError):
        MicroBatcher(RecordingRoute(), calibrated=False, max_batch=0)
    with pytest.raises(ValueError):
        MicroBatcher(RecordingRoute(), calibrated=False, max_wait_ms=-1)

    async def main():
        await MicroBatcher(RecordingRoute(), calibrated=False).submit(["x"])

    with pytest.raises(RuntimeError, match="start"):
        asyncio.run(main())


def test_server_answers_match_unbatched_routing_under_concurrency(tmp_path):
    import httpx

    import routecast

    ckpt = make_checkpoint(tmp_path / "ck")
    prompts = prompts_of("math", 30, seed=3) + prompts_of("chat", 30, seed=4)
    runtime = routecast.load(ckpt)
    expected = {p: runtime.route([p], lam=30.0)[0] for p in prompts}

    async def drive(url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            responses = await asyncio.gather(*(client.post("/v1/route", json={"prompt": p, "lam": 30.0})
                                               for p in prompts))
            metrics = (await client.get("/metrics")).text
        return responses, metrics

    with serving(ckpt, settings={"batch_wait_ms": 20.0, "max_batch": 64}) as server:
        responses, metrics = asyncio.run(drive(server.url))
    for prompt, response in zip(prompts, responses):
        assert response.status_code == 200
        decision = response.json()["decisions"][0]
        assert decision["model"] == expected[prompt]["model"]
        assert decision["ranking"] == expected[prompt]["ranking"]
        assert decision["predicted_quality"] == pytest.approx(expected[prompt]["predicted_quality"], abs=1e-6)
    count = float(re.search(r"^routecast_route_batch_prompts_count (\S+)$", metrics, re.M).group(1))
    total = float(re.search(r"^routecast_route_batch_prompts_sum (\S+)$", metrics, re.M).group(1))
    assert total == len(prompts)
    assert count < len(prompts)  # some requests were routed together


def test_a_poison_prompt_fails_alone_in_a_merged_batch():
    """A merged call that fails is retried request by request: only the poison request fails."""
    route = RecordingRoute(delay=0.02, fail_on="poison")
    requests = [([f"p{i}"], {}) for i in range(10)] + [(["poison"], {})] + [([f"q{i}"], {}) for i in range(10)]
    answers = _run(route, requests, calibrated=False, max_wait_ms=30)
    failures = [a for a in answers if isinstance(a, Exception)]
    assert len(failures) == 1 and "poison" in str(failures[0])
    assert [a[0]["text"] for a in answers if not isinstance(a, Exception)] == \
        [f"p{i}" for i in range(10)] + [f"q{i}" for i in range(10)]
    assert any(len(texts) > 1 and "poison" in texts for texts, _ in route.calls)  # it really was merged first


def test_fair_share_a_heavy_key_cannot_crowd_out_a_light_one():
    """A key with 8 requests of 256 long prompts and a key with one short prompt: the short one is
    routed in the first or second router call, not after the 2,048 long prompts."""
    route = RecordingRoute(delay=0.005)
    long_prompt = "x" * 2000

    async def main():
        batcher = MicroBatcher(route, calibrated=False, max_batch=64, quantum_chars=8_000, max_chars=2000).start()
        try:
            heavy = [asyncio.ensure_future(batcher.submit([long_prompt] * 256, key="heavy")) for _ in range(8)]
            await asyncio.sleep(0.02)  # the heavy key's work is queued and being routed
            light = await batcher.submit(["short"], key="light")
            heavy_answers = await asyncio.gather(*heavy)
            return light, heavy_answers
        finally:
            await batcher.aclose()

    light, heavy_answers = asyncio.run(main())
    assert light == [{"text": "short", "knobs": {}}]
    assert [len(a) for a in heavy_answers] == [256] * 8  # the heavy requests are whole and in order
    call_of_short = next(i for i, (texts, _) in enumerate(route.calls) if "short" in texts)
    heavy_before = sum(len(texts) for texts, _ in route.calls[:call_of_short])
    assert heavy_before <= 6 * 4  # without a fair share: after all 2,048 prompts
    sizes = [len(texts) for texts, _ in route.calls]
    assert sum(sizes) == 8 * 256 + 1
    # every call holds at most one quantum (4 prompts of 2,000 characters) of the heavy key's work
    assert max(sizes) <= 4 + 1
