"""Hot reload (routecast.serving.rollout): ``POST /admin/reload`` swaps a verified checkpoint in
between requests; a refused one leaves the old one serving; a reload under load on a real
loopback server fails no request and mixes no two checkpoints in one request."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from routecast.core.checkpoint.files import manifest_sha256
from routecast.data.decision_log import DecisionLog
from routecast.data.outcome_log import OutcomeLog
from routecast.serving.app import create_app
from tests._support.serving import ServerThread, TinyRouter, backends_for, make_checkpoint, synthetic_log

ADMIN, CLIENT = "admin-key-123456", "client-key-123456"
AUTH_ADMIN, AUTH_CLIENT = ({"authorization": f"Bearer {k}"} for k in (ADMIN, CLIENT))
RENAMED = ("s2", "m2", "l2")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A: knn on (small, medium, large); B: test-tiny on the same data with other model names, so a
    request served by half of each would name models of both."""
    root = tmp_path_factory.mktemp("reload")
    a = make_checkpoint(root / "a")
    log = synthetic_log()
    renamed = OutcomeLog(prompt_ids=log.prompt_ids, prompts=log.prompts, models=RENAMED, scores=log.scores,
                         costs=log.costs, source="<renamed>")
    b = make_checkpoint(root / "b", TinyRouter().fit(renamed))
    return a, b


def _tampered(b: Path, tmp_path: Path) -> Path:
    bad = shutil.copytree(b, tmp_path / "tampered")
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    return bad


def _app(checkpoint, backend, **kwargs):
    return create_app(checkpoint, backends=backends_for({"*": backend}), api_keys=[CLIENT], admin_keys=[ADMIN],
                      **kwargs)


def test_reload_is_admin_only_and_swaps_the_checkpoint(checkpoints, backend, tmp_path):
    a, b = checkpoints
    with TestClient(_app(a, backend, decision_log=tmp_path / "d.sqlite")) as client:
        assert client.get("/health").json() == {"status": "ok"}  # anonymous: nothing about the checkpoint
        assert client.post("/admin/reload", json={"checkpoint": str(b)}, headers=AUTH_CLIENT).status_code == 403
        assert client.get("/admin/status", headers=AUTH_CLIENT).status_code == 403
        assert client.get("/admin/status", headers=AUTH_ADMIN).json()["checkpoint"]["id"] == manifest_sha256(a)
        before = client.post("/v1/route", json={"prompt": "hello"}, headers=AUTH_CLIENT).json()
        assert before["decisions"][0]["model"] in ("small", "medium", "large")

        answer = client.post("/admin/reload", json={"checkpoint": str(b)}, headers=AUTH_ADMIN)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["from"], answer.json()["to"]) == (manifest_sha256(a), manifest_sha256(b))
        after = client.post("/v1/route", json={"prompt": "hello"}, headers=AUTH_CLIENT).json()
        assert after["router_type"] == "test-tiny" and after["decisions"][0]["model"] in RENAMED
        chat = client.post("/v1/chat/completions", headers=AUTH_CLIENT,
                           json={"model": "router", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.headers["x-routecast-model"] in RENAMED
        status = client.get("/admin/status", headers=AUTH_ADMIN).json()
        assert status["checkpoint"]["id"] == manifest_sha256(b)
        assert [c["event"] for c in status["changes"]] == ["reloaded"]
    with DecisionLog(tmp_path / "d.sqlite") as log:
        rows = {r["request_id"]: r for r in log.records()}
    assert rows[before["request_id"]]["extra"]["checkpoint"] == manifest_sha256(a)
    assert rows[after["request_id"]]["extra"]["checkpoint"] == manifest_sha256(b)
    assert rows[chat.headers["x-routecast-request-id"]]["extra"]["checkpoint"] == manifest_sha256(b)


def test_a_tampered_candidate_is_refused_and_the_old_one_keeps_serving(checkpoints, backend, tmp_path):
    a, b = checkpoints
    bad = _tampered(b, tmp_path)
    with TestClient(_app(a, backend)) as client:
        refused = client.post("/admin/reload", json={"checkpoint": str(bad)}, headers=AUTH_ADMIN)
        assert refused.status_code == 422
        message = refused.json()["error"]["message"]
        assert "model.safetensors: sha256 does not match" in message and manifest_sha256(a) in message
        assert client.post("/v1/route", json={"prompt": "hi"}, headers=AUTH_CLIENT).json()["router_type"] == "knn"
        status = client.get("/admin/status", headers=AUTH_ADMIN).json()
        assert status["checkpoint"]["id"] == manifest_sha256(a)
        assert status["changes"][-1]["event"] == "refused"
        missing = client.post("/admin/reload", json={"checkpoint": str(tmp_path / "nowhere")}, headers=AUTH_ADMIN)
        assert missing.status_code == 422 and "still serving" in missing.json()["error"]["message"]


def test_a_pinned_server_needs_the_new_pin(checkpoints, backend):
    a, b = checkpoints
    with TestClient(_app(a, backend, expect_sha256=manifest_sha256(a))) as client:
        unpinned = client.post("/admin/reload", json={"checkpoint": str(b)}, headers=AUTH_ADMIN)
        assert unpinned.status_code == 400 and "expect_sha256" in unpinned.json()["error"]["message"]
        wrong = client.post("/admin/reload", json={"checkpoint": str(b), "expect_sha256": manifest_sha256(a)},
                            headers=AUTH_ADMIN)
        assert wrong.status_code == 422
        assert client.get("/admin/status", headers=AUTH_ADMIN).json()["checkpoint"]["id"] == manifest_sha256(a)
        right = client.post("/admin/reload", json={"checkpoint": str(b), "expect_sha256": manifest_sha256(b)},
                            headers=AUTH_ADMIN)
        assert right.status_code == 200 and right.json()["to"] == manifest_sha256(b)


def test_reload_with_several_workers_is_refused_in_one_line(checkpoints, backend):
    a, b = checkpoints
    with TestClient(_app(a, backend, workers=2)) as client:
        answer = client.post("/admin/reload", json={"checkpoint": str(b)}, headers=AUTH_ADMIN)
        assert answer.status_code == 409 and "--workers 1" in answer.json()["error"]["message"]


def test_reloads_under_load_fail_no_request_and_mix_none(checkpoints, backend, tmp_path):
    """20 reloads (A, B, A, ...) while 1,200 chats and routes run 16 at a time on a real server."""
    a, b = checkpoints
    sets = {manifest_sha256(a): {"small", "medium", "large"}, manifest_sha256(b): set(RENAMED)}
    app = _app(a, backend, decision_log=tmp_path / "d.sqlite")
    results: list[tuple[int, str, str | None]] = []

    async def traffic(client: httpx.AsyncClient, worker: int, n: int):
        for i in range(n):
            if i % 2:
                r = await client.post("/v1/chat/completions", headers=AUTH_CLIENT, json={
                    "model": "router", "messages": [{"role": "user", "content": f"Solve {worker} x {i}"}]})
                results.append((r.status_code, r.headers.get("x-routecast-request-id"), r.headers.get("x-routecast-model")))
            else:
                r = await client.post("/v1/route", headers=AUTH_CLIENT, json={"prompt": f"Say hi to {worker} {i}"})
                body = r.json()
                rid = body.get("request_id")
                results.append((r.status_code, rid, body["decisions"][0]["model"] if r.status_code == 200 else None))

    async def reloads(client: httpx.AsyncClient) -> list[int]:
        codes = []
        for k in range(20):
            await asyncio.sleep(0.05)
            r = await client.post("/admin/reload", json={"checkpoint": str(b if k % 2 == 0 else a)},
                                  headers=AUTH_ADMIN, timeout=30)
            codes.append(r.status_code)
        return codes

    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            load = asyncio.gather(*(traffic(client, w, 75) for w in range(16)))
            codes = await reloads(client)
            await load
            return codes

    with ServerThread(app) as server:
        codes = asyncio.run(main())
    assert codes == [200] * 20
    assert len(results) == 1200
    assert [r for r in results if r[0] != 200] == []
    with DecisionLog(tmp_path / "d.sqlite") as log:
        rows = {r["request_id"]: r for r in log.records()}
    served_by = {ck: 0 for ck in sets}
    for status, rid, model in results:
        row = rows[rid]
        models = sets[row["extra"]["checkpoint"]]
        served_by[row["extra"]["checkpoint"]] += 1
        # decided, ranked, answered and logged by one checkpoint
        assert model in models and set(row["predicted"]) == models and row["chosen"] in models
    assert min(served_by.values()) > 0  # both checkpoints served during the run


def test_sighup_reloads_the_checkpoint_folder_in_place(tmp_path):
    """``routecast serve`` in a subprocess: the checkpoint folder is replaced, SIGHUP swaps it in."""
    import os
    import signal
    import sys
    import time

    from routecast.core.registry import make_router
    from tests._support.fake_backend import free_port
    from tests._support.paths import REPO
    from tests._support.processes import server_process
    from tests._support.serving import ENCODER

    current = make_checkpoint(tmp_path / "current")
    first = manifest_sha256(current)
    keys = tmp_path / "admin.txt"
    keys.write_text(ADMIN + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "routecast.cli", "serve", str(current), "--port", str(port),
               "--admin-keys", str(keys)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with server_process(command, url, startup_timeout=60, env=env, cwd=REPO) as proc:
        assert httpx.get(f"{url}/admin/status", headers=AUTH_ADMIN).json()["checkpoint"]["id"] == first
        shutil.rmtree(current)
        make_checkpoint(current, make_router("knn", k=1, encoder=ENCODER).fit(synthetic_log(seed=4)))
        second = manifest_sha256(current)
        assert second != first
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/admin/status", headers=AUTH_ADMIN).json()["checkpoint"]["id"] != second:
            assert time.monotonic() < deadline, "SIGHUP did not reload the checkpoint"
            time.sleep(0.2)
        status = httpx.get(f"{url}/admin/status", headers=AUTH_ADMIN).json()
        assert status["changes"][-1]["trigger"] == "sighup"
        assert httpx.post(f"{url}/v1/route", json={"prompt": "hi"}, headers=AUTH_ADMIN).status_code == 200
