"""``--engine ray``: embedding and batch routing on a local 2-CPU Ray cluster equal the single-process
results row for row, survive a worker crash without duplicate rows, and fail cleanly.

3,000 real prompts of llmrouter_9models; the hashing encoder (no weights) and a linear router keep
each Ray pass at seconds. Skipped with a reason only where the ``ray`` extra is not installed.
"""

from __future__ import annotations

import json
import socket
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from routecast.errors import ConfigError, DataError, MissingExtraError

ENCODER = "hashing:dim=32"
N_PROMPTS = 3000


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory, llmrouter_log):
    folder = tmp_path_factory.mktemp("prompts")
    path = folder / "prompts.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i, prompt in enumerate(llmrouter_log.prompts[:N_PROMPTS]):
            handle.write(json.dumps({"id": f"q{i:05d}", "prompt": str(prompt)}) + "\n")
    return path


def _no_partial_left(folder):
    return [p.name for p in folder.iterdir() if ".partial" in p.name or ".old-" in p.name]


def test_engine_ray_without_ray_installed_is_one_line(monkeypatch, tmp_path, prompts_file):
    from routecast.cli import app
    from routecast.data.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when it is not installed
    with pytest.raises(MissingExtraError, match=r"needs Ray Data .*pip install 'routecast\[ray\]'"):
        import_ray()
    result = CliRunner().invoke(app, ["embed", str(prompts_file), "-o", str(tmp_path / "emb"), "--encoder", ENCODER,
                                      "--engine", "ray"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "routecast[ray]" in lines[0], result.output
    assert not (tmp_path / "emb").exists()


def test_unknown_engine_is_refused(tmp_path, prompts_file):
    from routecast.router.embed_files import embed_file

    with pytest.raises(ConfigError, match="engine must be one of local, ray"):
        embed_file(prompts_file, tmp_path / "emb", encoder=ENCODER, engine="spark")


def test_local_workers_write_the_same_vectors(tmp_path, prompts_file):
    from routecast.router.embed_files import embed_file, read_embeddings
    from routecast.router.encoders import get_encoder

    one = embed_file(prompts_file, tmp_path / "one", encoder=ENCODER, fill_cache=False)
    two = embed_file(prompts_file, tmp_path / "two", encoder=ENCODER, workers=2, fill_cache=False)
    assert one["rows"] == two["rows"] == N_PROMPTS
    ids1, v1 = read_embeddings(tmp_path / "one")
    ids2, v2 = read_embeddings(tmp_path / "two")
    assert ids1 == ids2 == [f"q{i:05d}" for i in range(N_PROMPTS)]
    np.testing.assert_array_equal(v1, v2)
    first = json.loads(prompts_file.read_text().splitlines()[0])["prompt"]
    np.testing.assert_array_equal(v1[0], get_encoder(ENCODER).encode([first])[0])
    assert _no_partial_left(tmp_path) == []


def test_embed_output_fills_the_cache(tmp_path, prompts_file):
    """Training after `routecast embed` encodes nothing: every prompt is a cache hit."""
    from routecast.router.embed_files import embed_file, fill_cache_from
    from routecast.router.embedding_cache import EmbeddingCache
    from tests._support.encoders import CountingEncoder

    embed_file(prompts_file, tmp_path / "emb", encoder=ENCODER, fill_cache=False)
    counting = CountingEncoder(dim=32)  # the same hashing vectors, but cacheable and counted
    assert fill_cache_from(tmp_path / "emb", counting, cache_dir=tmp_path / "cache") == N_PROMPTS
    prompts = [json.loads(line)["prompt"] for line in prompts_file.read_text().splitlines()]
    vectors = EmbeddingCache(counting, tmp_path / "cache").embed(prompts)
    assert counting.calls == 0
    np.testing.assert_array_equal(vectors, counting.inner.encode(prompts))


# ----------------------------------------------------------------------------------- on Ray
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_ray_address_that_does_not_answer_is_one_line(tmp_path, prompts_file):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'routecast[ray]')")
    from routecast.cli import app

    if ray.is_initialized():
        pytest.skip("a Ray session is already up in this process: connect() would reuse it")
    address = f"127.0.0.1:{_free_port()}"
    result = CliRunner().invoke(app, ["embed", str(prompts_file), "-o", str(tmp_path / "emb"), "--encoder", ENCODER,
                                      "--engine", "ray", "--ray-address", address])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [f"error: ray_address {address!r} does not answer (Connection refused); start the cluster "
                     "(`ray start --head`) or give the address it printed"], result.output
    assert not (tmp_path / "emb").exists() and _no_partial_left(tmp_path) == []


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'routecast[ray]')")
    import tests._support.ray_faults as faults

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(faults)  # workers need not import the tests package
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_embedding_equals_local_row_for_row(ray_cluster, tmp_path, prompts_file):
    from routecast.router.embed_files import embed_file, read_embeddings

    local = embed_file(prompts_file, tmp_path / "local", encoder=ENCODER, fill_cache=False)
    on_ray = embed_file(prompts_file, tmp_path / "ray", encoder=ENCODER, engine="ray", workers=2, fill_cache=False)
    assert local["rows"] == on_ray["rows"] == N_PROMPTS and on_ray["duplicates_dropped"] == 0
    ids_l, v_l = read_embeddings(tmp_path / "local")
    ids_r, v_r = read_embeddings(tmp_path / "ray")
    order = np.argsort(ids_r)
    assert [ids_r[i] for i in order] == ids_l
    np.testing.assert_array_equal(v_r[order], v_l)
    assert _no_partial_left(tmp_path) == []


@pytest.mark.slow
def test_a_crashed_ray_worker_is_retried_without_duplicate_rows(ray_cluster, tmp_path, prompts_file):
    import pyarrow.parquet as pq

    from routecast.router.ray_embed import embed_with_ray
    from tests._support.ray_faults import CrashOnceEmbedActor

    marker = tmp_path / "crashed"
    summary = embed_with_ray(prompts_file, tmp_path / "ray", encoder=ENCODER, workers=2, block_rows=500,
                             actor=CrashOnceEmbedActor, actor_kwargs={"marker": str(marker)})
    assert marker.exists()  # the crash happened
    ids = pq.read_table(tmp_path / "ray", columns=["id"]).column("id").to_pylist()
    assert summary["rows"] == len(ids) == len(set(ids)) == N_PROMPTS


@pytest.mark.slow
def test_a_failing_ray_run_leaves_no_output(ray_cluster, tmp_path, prompts_file):
    from routecast.router.ray_embed import embed_with_ray
    from tests._support.ray_faults import AlwaysFailEmbedActor

    with pytest.raises(Exception, match="injected failure in every batch"):
        embed_with_ray(prompts_file, tmp_path / "ray", encoder=ENCODER, workers=1, actor=AlwaysFailEmbedActor)
    assert not (tmp_path / "ray").exists() and _no_partial_left(tmp_path) == []
    no_ids = tmp_path / "no_ids.jsonl"
    no_ids.write_text(json.dumps({"prompt": "hello"}) + "\n")
    with pytest.raises(DataError, match="column 'id' missing"):
        embed_with_ray(no_ids, tmp_path / "ray", encoder=ENCODER)
    assert not (tmp_path / "ray").exists()


@pytest.mark.slow
def test_ray_batch_routing_equals_route_file_row_for_row(ray_cluster, tmp_path, prompts_file, llmrouter_log):
    import pyarrow.parquet as pq

    from routecast.core.checkpoint import save_checkpoint
    from routecast.core.registry import make_router
    from routecast.serving.batch import route_file
    from routecast.serving.ray_route import route_with_ray
    from routecast.serving.runtime import load

    train = llmrouter_log.subset(np.arange(N_PROMPTS, N_PROMPTS + 1500))
    checkpoint = save_checkpoint(make_router("linear", encoder=ENCODER).fit(train), tmp_path / "ckpt")
    lam = 2000.0
    local = route_file(load(checkpoint), prompts_file, tmp_path / "local.jsonl", lam=lam)
    on_ray = route_with_ray(checkpoint, prompts_file, tmp_path / "ray", workers=2, lam=lam)
    assert on_ray["n_prompts"] == local["n_prompts"] == N_PROMPTS
    assert on_ray["decisions"] == local["decisions"]
    assert sum(1 for c in local["decisions"].values() if c) >= 2  # lam chosen so routing is not trivial
    expected = {r["id"]: r for r in map(json.loads, (tmp_path / "local.jsonl").read_text().splitlines())}
    rows = pq.read_table(tmp_path / "ray").to_pylist()
    assert len(rows) == N_PROMPTS and {r["id"] for r in rows} == set(expected)
    for row in rows:
        want = expected[row["id"]]
        assert row["model"] == want["model"] and row["ranking"] == want["ranking"]
        quality = dict(row["predicted_quality"])
        assert quality.keys() == want["predicted_quality"].keys()
        assert [quality[m] for m in quality] == pytest.approx([want["predicted_quality"][m] for m in quality],
                                                              abs=1e-12)
        assert row["expected_cost"] == pytest.approx(want["expected_cost"], abs=1e-15)
