"""``collect --engine ray``: shards of real prompts sent from Ray tasks on a local 2-CPU cluster equal local
collect cell for cell, survive a dying worker and a failing shard with every cell exactly once, and split
the limits instead of multiplying them.

The backends are the fake OpenAI-compatible servers of the collect tests (one slow, one that answers 429
then 500 before answering a third of the cells). Skipped with a reason only where the ``ray`` extra is
not installed.
"""

from __future__ import annotations

import json
import socket
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from routecast.data.collect import collect, read_all_journals, read_prompts, shard_journal_folder
from routecast.data.endpoints import load_endpoints
from routecast.data.ray_collect import CollectShardError, collect_with_ray, make_shards, share, shard_of
from routecast.errors import ConfigError, MissingExtraError
from tests._support.fake_openai import FakeOpenAI

PRICES = {"slow": [1.0, 2.0], "flaky": [0.1, 0.2]}
RAY_MISSING = "the ray extra is not installed (pip install 'routecast[ray]')"


@pytest.fixture(scope="module")
def real_prompts(llmrouter_log):
    return [str(p) for p in llmrouter_log.prompts[:40]]


def _prompt_file(path: Path, prompts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "reference": str(i)}) + "\n" for i, p in enumerate(prompts)),
                    encoding="utf-8")
    return path


@pytest.fixture
def backends():
    made: list[FakeOpenAI] = []

    def make():
        pair = FakeOpenAI(delay=0.02), FakeOpenAI(flaky=True)
        made.extend(pair)
        return pair

    yield make
    for backend in made:
        backend.stop()


def _endpoints(slow, flaky) -> dict:
    return {"endpoints": {"slow": {"base_url": slow.base_url, "concurrency": 4},
                          "flaky": {"base_url": flaky.base_url, "concurrency": 4, "requests_per_second": 200}}}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _without_latency(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "latency_s"} for row in rows]


def _expected_answer(row: dict) -> str:
    return f"{row['model']} says: {row['prompt'][::-1]}"


# ------------------------------------------------------------------------------ no cluster needed
def test_limits_are_split_not_multiplied(tmp_path, real_prompts):
    rows, label = read_prompts(_prompt_file(tmp_path / "p.jsonl", real_prompts[:12]))
    endpoints = load_endpoints({"a": {"base_url": "http://127.0.0.1:9/v1", "concurrency": 5,
                                      "requests_per_second": 9},
                                "b": {"base_url": "http://127.0.0.1:9/v1", "concurrency": 3}})
    names = tuple(endpoints)
    todo = [(p, m) for p in rows for m in names]
    shards = make_shards(todo, rows, names, endpoints, workers=3, concurrency=7, table=None, label=label,
                         retries=1, backoff=0.0, folder=str(tmp_path))
    assert [share(5, 2, i) for i in range(2)] == [3, 2] and [share(7, 3, i) for i in range(3)] == [3, 2, 2]
    assert len(shards) == 3 and all(s.count == 3 for s in shards)
    assert sum(s.endpoints["a"].concurrency for s in shards) == 5
    assert sum(s.endpoints["b"].concurrency for s in shards) == 3
    assert sum(s.concurrency for s in shards) == 7
    assert all(s.endpoints["a"].requests_per_second == pytest.approx(3.0) for s in shards)
    assert all(s.endpoints["b"].requests_per_second is None for s in shards)
    # every cell in exactly one shard; every cell of a prompt in the same shard, the one its id hashes to
    cells = Counter((p.prompt_id, m) for s in shards for p, m in s.todo)
    assert len(cells) == 24 and set(cells.values()) == {1}
    for s in shards:
        assert {shard_of(p.prompt_id, 3) for p, _ in s.todo} == {s.index}
        assert {p.prompt_id for p in s.rows} == {p.prompt_id for p, _ in s.todo}
    assert shard_of("q1", 1000) == 6  # stable: sha1, not Python's salted hash


def test_more_workers_than_an_endpoint_allows_is_refused(tmp_path, real_prompts):
    prompts = _prompt_file(tmp_path / "p.jsonl", real_prompts[:3])
    eps = {"one": {"base_url": "http://127.0.0.1:9/v1", "concurrency": 1}, "b": {"base_url": "http://127.0.0.1:9/v1"}}
    with pytest.raises(ConfigError, match=r"workers=2 shards cannot share endpoint 'one' \(concurrency 1\)"):
        collect_with_ray(prompts, eps, tmp_path / "o.jsonl", workers=2, progress=False)
    with pytest.raises(ConfigError, match="workers=3 shards cannot share --concurrency 2"):
        collect_with_ray(prompts, eps, tmp_path / "o.jsonl", workers=3, concurrency=2,
                         models=["b"], progress=False)
    assert not (tmp_path / "o.jsonl").exists()


def test_engine_ray_without_ray_installed_is_one_line(monkeypatch, tmp_path, real_prompts):
    from routecast.cli import app

    prompts = _prompt_file(tmp_path / "p.jsonl", real_prompts[:3])
    eps = tmp_path / "eps.json"
    eps.write_text(json.dumps({"endpoints": {"a": {"base_url": "http://127.0.0.1:9/v1"}}}), encoding="utf-8")
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when it is not installed
    with pytest.raises(MissingExtraError):
        collect_with_ray(prompts, eps, tmp_path / "o.jsonl", progress=False)
    result = CliRunner().invoke(app, ["collect", str(prompts), "-e", str(eps), "-o", str(tmp_path / "o.jsonl"),
                                      "--engine", "ray"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "routecast[ray]" in lines[0], result.output
    result = CliRunner().invoke(app, ["collect", str(prompts), "-e", str(eps), "-o", str(tmp_path / "o.jsonl"),
                                      "--workers", "2"])
    assert result.exit_code == 2 and result.output.strip() == "error: --workers and --ray-address need --engine ray"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eps.json", "p.jsonl"]  # no log, no journal


# ------------------------------------------------------------------------------------- on Ray
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_ray_address_that_does_not_answer_is_one_line(tmp_path, real_prompts, backends):
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    from routecast.cli import app

    if ray.is_initialized():
        pytest.skip("a Ray session is already up in this process: connect() would reuse it")
    prompts = _prompt_file(tmp_path / "p.jsonl", real_prompts[:3])
    eps = tmp_path / "eps.json"
    eps.write_text(json.dumps(_endpoints(*backends())), encoding="utf-8")
    address = f"127.0.0.1:{_free_port()}"
    result = CliRunner().invoke(app, ["collect", str(prompts), "-e", str(eps), "-o", str(tmp_path / "o.jsonl"),
                                      "--engine", "ray", "--ray-address", address])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: ray_address {address!r} does not answer (Connection refused); start the cluster "
        "(`ray start --head`) or give the address it printed"], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eps.json", "p.jsonl"]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    import tests._support.ray_collect_faults as faults

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(faults)  # workers need not import the tests package
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_collect_equals_local_collect_cell_for_cell(ray_cluster, tmp_path, real_prompts, backends):
    """Same responses, token counts, costs, attempts, columns and row order; only latency differs."""
    from routecast.cli import app

    prompts = _prompt_file(tmp_path / "prompts.jsonl", real_prompts[:30])
    local = collect(prompts, _endpoints(*backends()), tmp_path / "local.jsonl", prices=PRICES, backoff=0.01,
                    progress=False)
    slow, flaky = backends()  # fresh servers: the flaky one fails the same cells on their first attempts again
    (tmp_path / "eps.json").write_text(json.dumps(_endpoints(slow, flaky)), encoding="utf-8")
    (tmp_path / "prices.json").write_text(json.dumps(PRICES), encoding="utf-8")
    out = tmp_path / "ray.jsonl"
    result = CliRunner().invoke(app, ["collect", str(prompts), "-e", str(tmp_path / "eps.json"), "-o", str(out),
                                      "--price-table", str(tmp_path / "prices.json"), "--backoff", "0.01",
                                      "--engine", "ray", "--workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "60 cells (30 prompts x 2 models; 60 sent on ray in 2 shards, 0 from the journal)" in result.output
    want, got = _records(tmp_path / "local.jsonl"), _records(out)
    assert local.cells == len(want) == len(got) == 60
    assert _without_latency(got) == _without_latency(want)
    assert all(row["response"] == _expected_answer(row) for row in got)
    assert {row["attempts"] for row in got if row["model"] == "flaky"} == {1, 3}  # retried through 429 and 500
    assert flaky.statuses[429] == flaky.statuses[500] > 0
    for backend in (slow, flaky):  # each cell answered once, nothing sent twice
        assert len(backend.answered) == 30 and set(backend.answered.values()) == {1}
    files = sorted(p.name for p in shard_journal_folder(out).iterdir())
    assert [name.split(".")[0] for name in files] == ["shard-0001-of-0002", "shard-0002-of-0002"]
    # a rerun sends nothing, on either engine
    again = collect_with_ray(prompts, tmp_path / "eps.json", out, prices=PRICES, progress=False)
    assert (again.sent_cells, again.resumed_cells, again.shards) == (0, 60, 0)
    assert collect(prompts, tmp_path / "eps.json", out, prices=PRICES, progress=False).sent_cells == 0
    assert _without_latency(_records(out)) == _without_latency(want)


@pytest.mark.slow
def test_a_dying_worker_is_retried_and_every_cell_is_sent_once(ray_cluster, tmp_path, real_prompts, backends):
    from tests._support.ray_collect_faults import CrashOnceShardSender

    n = 40
    slow, flaky = backends()
    prompts = _prompt_file(tmp_path / "prompts.jsonl", real_prompts[:n])
    out = tmp_path / "log.csv"
    marker = tmp_path / "crashed"
    result = collect_with_ray(prompts, _endpoints(slow, flaky), out, prices=PRICES, backoff=0.01, workers=2,
                              progress=False, sender=CrashOnceShardSender(str(marker), after=5))
    assert marker.exists()  # a worker died mid-shard
    files = sorted(shard_journal_folder(out).glob("*.jsonl"))
    assert len(files) == 3  # two shards, one of them in two attempts
    assert (result.cells, result.sent_cells, result.failed) == (2 * n, 2 * n, [])
    import pandas as pd

    rows = pd.read_csv(out, keep_default_na=False).to_dict("records")
    cells = Counter((r["prompt_id"], r["model"]) for r in rows)
    assert len(cells) == 2 * n and set(cells.values()) == {1}
    assert all(r["response"] == _expected_answer(r) for r in rows)
    for r in rows:
        p_in, p_out = PRICES[r["model"]]
        assert r["cost"] == pytest.approx((r["tokens_in"] * p_in + r["tokens_out"] * p_out) / 1e6)
    # only what the dead attempt had in flight can have been answered twice: its share of the caps (2 + 2)
    # (a request torn by the kill can reach the fake server as an empty body, which it answers as the
    # cell ('', ''): not a cell of the run, so it is left out of the counts)
    answered = [b.answered_cells() for b in (slow, flaky)]
    twice = sum(c - 1 for counts in answered for c in counts.values() if c > 1)
    assert twice <= 4
    asked = {(r["prompt"], r["model"]) for r in rows}
    assert set(answered[0]) | set(answered[1]) == asked


@pytest.mark.slow
def test_a_failed_shard_writes_nothing_and_a_rerun_resumes(ray_cluster, tmp_path, real_prompts, backends):
    from tests._support.ray_collect_faults import FailAfterShardSender

    n = 30
    slow, flaky = backends()
    prompts = _prompt_file(tmp_path / "prompts.jsonl", real_prompts[:n])
    out = tmp_path / "log.jsonl"
    eps = _endpoints(slow, flaky)
    with pytest.raises(CollectShardError) as info:
        collect_with_ray(prompts, eps, out, prices=PRICES, backoff=0.01, workers=2, progress=False,
                         sender=FailAfterShardSender(after=4))
    message = str(info.value)
    assert message.startswith("collect on ray: shard 1 of 2 failed (ValueError: injected failure after the first "
                              "cells); nothing was written to the log"), message
    assert not out.exists()  # no partial log that looks complete
    before = len(read_all_journals(out))
    assert 4 <= before < 2 * n
    result = collect_with_ray(prompts, eps, out, prices=PRICES, backoff=0.01, workers=2, progress=True)
    assert (result.resumed_cells, result.sent_cells, result.cells) == (before, 2 * n - before, 2 * n)
    cells = Counter((r["prompt_id"], r["model"]) for r in _records(out))
    assert len(cells) == 2 * n and set(cells.values()) == {1}
    # only requests in flight when the run stopped can have been answered twice over both runs: the
    # cancelled shard's (its caps, 2 + 2) and the failing shard's own, answered after its sender
    # raised and never journaled (2 + 2); seen in CI: 6
    answered = [b.answered_cells() for b in (slow, flaky)]
    twice = sum(c - 1 for counts in answered for c in counts.values() if c > 1)
    assert twice <= 8 and sum(len(counts) for counts in answered) == 2 * n
