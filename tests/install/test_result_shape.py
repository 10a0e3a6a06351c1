"""One result shape (``model``, ``rank``, ``predicted_quality``, ``expected_cost``, ``lam`` + ``operating_point``
and ``ranking``) in Python (``Router.route(...).records()``, ``Runtime.route``), batch JSONL and HTTP;
input fields passed through to decisions.jsonl; ``save_pretrained`` / ``from_pretrained``."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

import routecast
from routecast.errors import CheckpointError, DataError
from routecast.router.base import RESULT_FIELDS, Router, RouteResult
from routecast.serving.batch import route_file
from tests._support.serving import COSTS, MODELS, fitted_knn, prompts_of, serving

LAM = 30.0


@pytest.fixture(scope="module")
def router():
    return fitted_knn()


@pytest.fixture(scope="module")
def ckpt(router, tmp_path_factory):
    return router.save_pretrained(tmp_path_factory.mktemp("shape") / "knn")


@pytest.fixture(scope="module")
def prompts():
    return prompts_of("math", 3, seed=21) + prompts_of("chat", 3, seed=22)


def test_records_rank_and_ranking_follow_quality_and_utility():
    quality = np.array([[0.2, 0.5, 0.9], [0.8, 0.8, 0.8]])
    costs = np.array(COSTS)
    result = RouteResult(MODELS, np.array([1, 0]), quality, costs[[1, 0]], lam=100.0, costs=costs)
    first, second = result.records()
    assert tuple(first) == RESULT_FIELDS and tuple(second) == RESULT_FIELDS
    # prompt 1: 'medium' chosen, 'large' is predicted better -> rank 2; utilities 0.19, 0.4, -0.1
    assert first["model"] == "medium" and first["rank"] == 2
    assert first["ranking"] == ["medium", "small", "large"]
    assert first["expected_cost"] == pytest.approx(0.001) and first["lam"] == 100.0
    assert first["predicted_quality"] == {"small": 0.2, "medium": 0.5, "large": 0.9}
    # prompt 2: a three-way tie in quality; utility ties are broken towards the cheaper model
    assert second["rank"] == 1 and second["ranking"] == ["small", "medium", "large"]
    json.dumps(result.records(), allow_nan=False)  # JSON-able as is


def test_router_route_and_runtime_route_give_the_same_records(router, ckpt, prompts):
    from_router = router.route(prompts, lam=LAM)
    assert isinstance(from_router, RouteResult)
    records = from_router.records()
    runtime_records = routecast.load(ckpt).route(prompts, lam=LAM)
    assert [tuple(r) for r in runtime_records] == [RESULT_FIELDS] * len(prompts)
    assert [r["model"] for r in records] == [r["model"] for r in runtime_records] == ["large"] * 3 + ["small"] * 3
    for ours, theirs in zip(records, runtime_records):
        assert ours["ranking"] == theirs["ranking"] and ours["rank"] == theirs["rank"]
        assert ours["predicted_quality"] == pytest.approx(theirs["predicted_quality"], abs=1e-9)
    # chat prompts: every model is as good, cost decides -> the cheapest, although not the top-quality pick
    assert {r["ranking"][0] for r in records[3:]} == {"small"}


def test_http_route_returns_the_same_shape(ckpt, prompts):
    expected = routecast.load(ckpt).route(prompts, lam=LAM)
    with serving(ckpt) as server:
        reply = httpx.post(f"{server.url}/v1/route", json={"prompts": prompts, "lam": LAM}, timeout=30)
    assert reply.status_code == 200, reply.text
    decisions = reply.json()["decisions"]
    # the same fields, plus what only a served request has: its id and the fallback (issue 15)
    assert [tuple(d) for d in decisions] == [(*RESULT_FIELDS, "request_id", "fallback")] * len(prompts)
    assert len({d["request_id"] for d in decisions}) == len(prompts) and {d["fallback"] for d in decisions} == {None}
    assert [(d["model"], d["rank"], d["ranking"]) for d in decisions] == \
        [(d["model"], d["rank"], d["ranking"]) for d in expected]


def test_decisions_jsonl_has_the_shape_and_passes_input_fields_through(ckpt, prompts, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [{"id": f"q{i}", "prompt": p, "benchmark": "math" if i < 3 else "chat", "meta": {"user": i}}
             for i, p in enumerate(prompts)]
    lines[0].pop("meta")
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    route_file(routecast.load(ckpt), src, tmp_path / "out.jsonl", batch_size=4, lam=LAM)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = routecast.load(ckpt).route(prompts, lam=LAM)
    assert tuple(out[0]) == ("id", "benchmark", *RESULT_FIELDS)
    assert tuple(out[1]) == ("id", "benchmark", "meta", *RESULT_FIELDS)
    assert [o["benchmark"] for o in out] == ["math"] * 3 + ["chat"] * 3
    assert [o.get("meta") for o in out] == [None, {"user": 1}, {"user": 2}, {"user": 3}, {"user": 4}, {"user": 5}]
    assert [o["model"] for o in out] == [e["model"] for e in expected]
    assert [o["ranking"] for o in out] == [e["ranking"] for e in expected]
    assert all("prompt" not in o for o in out)


def test_input_field_named_like_a_decision_field_is_one_clear_error(ckpt, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": "hello"}) + "\n" + json.dumps({"prompt": "hi", "model": "gpt-4o"}) + "\n")
    with pytest.raises(DataError) as info:
        route_file(routecast.load(ckpt), src, tmp_path / "out.jsonl", lam=LAM)
    message = str(info.value)
    assert f"file {src}, row 2, column 'model'" in message and "rename it" in message
    assert not (tmp_path / "out.jsonl").exists()


def test_save_pretrained_and_from_pretrained_round_trip(router, ckpt, prompts, tmp_path):
    from routecast.core.checkpoint import manifest_sha256
    from routecast.router.knn import KnnRouter

    assert (ckpt / "manifest.json").is_file() and (ckpt / "model.safetensors").is_file()
    again = Router.from_pretrained(ckpt)
    assert type(again) is type(router) and again.models_ == router.models_
    np.testing.assert_allclose(again.predict_quality(prompts), router.predict_quality(prompts), atol=1e-9)
    assert KnnRouter.from_pretrained(ckpt).route(prompts, lam=LAM).chosen == router.route(prompts, lam=LAM).chosen
    runtime = routecast.from_pretrained(ckpt, expect_sha256=manifest_sha256(ckpt))
    assert [r["model"] for r in runtime.route(prompts, lam=LAM)] == router.route(prompts, lam=LAM).chosen


def test_from_pretrained_refuses_another_router_type_and_a_tampered_folder(ckpt, tmp_path):
    import shutil

    from routecast.router.linear import LinearRouter

    with pytest.raises(CheckpointError, match="holds a 'knn' router, not 'linear'"):
        LinearRouter.from_pretrained(ckpt)
    tampered = tmp_path / "tampered"
    shutil.copytree(ckpt, tampered)
    weights = tampered / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        routecast.from_pretrained(tampered)
    with pytest.raises(CheckpointError, match="sha256"):
        Router.from_pretrained(tampered)
