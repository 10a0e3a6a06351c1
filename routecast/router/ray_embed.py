"""``routecast embed --engine ray``: the encoder runs in Ray Data actors, one encoder load per actor.

Reads Parquet/JSONL shards (:func:`routecast.data.ray_engine.read_prompts`), embeds each block in
:class:`EmbedActor` (``map_batches`` with an actor class: the weights are loaded in ``__init__``,
not per batch), writes sharded Parquet of the same columns as the local engine
(:func:`routecast.router.embedding_cache.embedding_table`) into a temporary folder and renames it once
the row count and the ids check out. An actor that dies is restarted by Ray and its batch retried;
Ray's output files are named per write task, so the retry does not add rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from routecast.data.ray_engine import (IO_TASK, actor_pool, check_rows, complete_folder, concurrency, connect,
                                      read_prompts)


class EmbedActor:
    """Holds one encoder; turns a pyarrow batch of ``id``/``prompt`` into the embedding table."""

    def __init__(self, encoder: str, batch_size: int = 256):
        from routecast.router.encoders import get_encoder

        self.encoder = get_encoder(encoder)
        self.batch_size = int(batch_size)

    def __call__(self, batch):
        from routecast.router.embedding_cache import embedding_table

        prompts = [str(p) for p in batch.column("prompt").to_pylist()]
        vectors = self.encoder.encode(prompts, batch_size=self.batch_size)
        return embedding_table(batch.column("id").to_pylist(), prompts, vectors)


def embed_with_ray(input_path: str | os.PathLike, out: str | os.PathLike, *, encoder: str,
                   workers: int | None = None, ray_address: str | None = None, batch_size: int = 256,
                   block_rows: int = 4096, actor: type = EmbedActor,
                   actor_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Embed ``input_path`` into ``out`` on Ray; ``workers`` actors of 1 CPU each (default: an
    autoscaling pool of 1 to the cluster's CPUs). ``actor`` is the class run per block (a subclass
    can add behaviour, e.g. a test's injected crash; ``actor_kwargs`` are its extra constructor arguments)."""
    concurrency(workers)
    ray = connect(ray_address)
    dataset = read_prompts(ray, input_path)
    expected = dataset.count()
    embedded = dataset.map_batches(actor, fn_constructor_kwargs={"encoder": encoder, "batch_size": batch_size,
                                                          **(actor_kwargs or {})},
                                   batch_format="pyarrow", batch_size=block_rows, compute=actor_pool(ray, workers),
                                   num_cpus=1)
    out = Path(out)
    with complete_folder(out) as temp:
        embedded.write_parquet(str(temp), ray_remote_args=IO_TASK)
        checked = check_rows(temp, expected)
        files = len(list(temp.glob("*.parquet")))
    return {"rows": checked["rows"], "files": files, "duplicates_dropped": checked["duplicates_dropped"],
            "workers": workers}
