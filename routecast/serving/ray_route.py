"""``routecast route --engine ray``: batch routing of Parquet/JSONL shards with Ray Data actors.

Each :class:`RouteActor` loads the exported checkpoint once (:func:`routecast.serving.runtime.load`,
hash-checked, never unpickled) and routes whole blocks with the same runtime the single-process
``route_file`` uses, so the decisions are the same row for row. Output is a folder of Parquet
files, one row per prompt: ``id`` then the decision fields (:func:`decision_schema`; the
``predicted_quality`` map reads back as (model, quality) pairs); it appears
only when complete (temporary folder, row and id check, rename; see
:mod:`routecast.data.ray_engine`). Unlike the JSONL path, other input columns are not passed through.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from routecast.data.ray_engine import (IO_TASK, actor_pool, check_rows, complete_folder, concurrency, connect,
                                      read_prompts)


def decision_schema():
    """The Parquet types of a decision (:data:`routecast.router.base.RESULT_FIELDS`), fixed so every
    output file has the same schema even when a block's values are all null."""
    import pyarrow as pa

    return {"model": pa.string(), "rank": pa.int64(), "predicted_quality": pa.map_(pa.string(), pa.float64()),
            "expected_cost": pa.float64(), "lam": pa.float64(), "operating_point": pa.string(),
            "ranking": pa.list_(pa.string())}


class RouteActor:
    """Holds one loaded runtime; routes a pyarrow batch of ``id``/``prompt`` into decision rows."""

    def __init__(self, checkpoint: str, route_kwargs: dict[str, Any], trust: dict[str, Any]):
        from routecast.serving.runtime import load

        self.runtime = load(checkpoint, **trust)
        self.route_kwargs = dict(route_kwargs)

    def __call__(self, batch):
        import pyarrow as pa

        from routecast.router.base import RESULT_FIELDS

        records = self.runtime.route([str(p) for p in batch.column("prompt").to_pylist()], **self.route_kwargs)
        types = decision_schema()
        columns = {"id": batch.column("id")}
        for field in RESULT_FIELDS:
            values = [r.get(field) for r in records]
            if field == "predicted_quality":  # model -> quality, stored as a Parquet map
                values = [list(v.items()) for v in values]
            columns[field] = pa.array(values, type=types[field])
        return pa.table(columns)


def route_with_ray(checkpoint: str | os.PathLike, input_path: str | os.PathLike, out: str | os.PathLike, *,
                   workers: int | None = None, ray_address: str | None = None, block_rows: int = 4096,
                   trusted_key: str | os.PathLike | None = None, expect_sha256: str | None = None,
                   actor: type = RouteActor, **route_kwargs) -> dict[str, Any]:
    """Route every prompt of ``input_path`` into the Parquet folder ``out`` on Ray. ``route_kwargs``
    are :meth:`Runtime.route`'s (lam, budget, strong_share, target_quality, operating_point).
    The checkpoint is verified here first, so a bad one fails before the cluster does any work."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from routecast.serving.runtime import load

    concurrency(workers)
    trust = {"trusted_key": str(trusted_key) if trusted_key else None, "expect_sha256": expect_sha256}
    runtime = load(checkpoint, **trust)
    route_kwargs = {k: v for k, v in route_kwargs.items() if v is not None}
    ray = connect(ray_address)
    dataset = read_prompts(ray, input_path)
    expected = dataset.count()
    routed = dataset.map_batches(actor, fn_constructor_kwargs={"checkpoint": str(Path(checkpoint).resolve()),
                                                               "route_kwargs": route_kwargs, "trust": trust},
                                 batch_format="pyarrow", batch_size=block_rows, compute=actor_pool(ray, workers),
                                 num_cpus=1)
    with complete_folder(out) as temp:
        routed.write_parquet(str(temp), ray_remote_args=IO_TASK)
        checked = check_rows(temp, expected)
        counts = {model: 0 for model in runtime.models}
        for file in sorted(temp.glob("*.parquet")):
            values = pc.value_counts(pq.read_table(file, columns=["model"]).column("model").combine_chunks())
            for item in values.to_pylist():
                counts[item["values"]] = counts.get(item["values"], 0) + int(item["counts"])
    return {"n_prompts": checked["rows"], "decisions": counts, "output": str(out), "resumed": 0, "duplicates": 0,
            "duplicates_dropped": checked["duplicates_dropped"]}
