"""``routecast embed``: a prompts file in, sharded Parquet of embeddings out, the cache filled from it.

Why a file-to-file pass: on one box MiniLM embeds ~80 prompts/s, so a decision log of millions
of prompts is embedded once, in parallel (local worker processes, or a Ray cluster through
:mod:`routecast.router.ray_embed`), and every later ``train``/``evaluate`` reads the vectors from
the embedding cache instead of re-encoding.

Output: a folder of ``part-NNNNN.parquet`` files with columns ``id`` (as in the input), ``key``
(hex sha256 of the prompt: the embedding cache's key) and ``embedding`` (fixed-size list of
float32, the encoder's dim). The folder appears only when complete (written as
``OUT.partial-*``, checked row for row, renamed). The local and the Ray engine write the same
columns and the same vectors; only the split into files differs.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from routecast.data.ray_engine import check_rows, complete_folder, concurrency, input_files
from routecast.errors import ConfigError, DataError
from routecast.router.embedding_cache import EmbeddingCache, embedding_table

ENGINES = ("local", "ray")
#: rows per output file of the local engine (and per task handed to a worker process)
SHARD_ROWS = 20_000


def read_prompt_rows(path: str | os.PathLike) -> tuple[list[Any], list[str]]:
    """All ``(id, prompt)`` rows of a .parquet/.jsonl file or folder, in file order, checked."""
    ids: list[Any] = []
    prompts: list[str] = []
    for file in input_files(path):
        if file.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(file)
            for column in ("id", "prompt"):
                if column not in table.column_names:
                    raise DataError(f"column {column!r} missing", path=str(file), column=column)
            ids += table.column("id").to_pylist()
            prompts += table.column("prompt").to_pylist()
            continue
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise DataError("not a JSON line", path=str(file), row=number) from None
                for column in ("id", "prompt"):
                    if not isinstance(row, dict) or column not in row:
                        raise DataError(f"{column!r} missing", path=str(file), row=number, column=column)
                ids.append(row["id"])
                prompts.append(row["prompt"])
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise DataError(f"prompt of id {ids[i]!r} is {type(prompt).__name__}, expected a string",
                            path=str(path), column="prompt")
    return ids, prompts


# ------------------------------------------------------------------------ local worker processes
_WORKER_ENCODER = None


def _load_worker_encoder(spec: str) -> None:
    global _WORKER_ENCODER  # one encoder per worker process, loaded once by the pool's initializer
    from routecast.router.encoders import get_encoder

    _WORKER_ENCODER = get_encoder(spec)


def _encode_in_worker(prompts: list[str], batch_size: int) -> np.ndarray:
    return _WORKER_ENCODER.encode(prompts, batch_size=batch_size)


def _check(engine: str, workers: int | None) -> None:
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    concurrency(workers)


def embed_file(input_path: str | os.PathLike, out: str | os.PathLike, *, encoder: str, engine: str = "local",
               workers: int | None = None, ray_address: str | None = None, batch_size: int = 256,
               fill_cache: bool = True, progress: bool = False) -> dict[str, Any]:
    """Embed every prompt of ``input_path`` with ``encoder`` into the folder ``out``.

    ``engine="local"``: ``workers`` processes (default 1: this process) each load the encoder once
    and take :data:`SHARD_ROWS` prompts at a time. ``engine="ray"``: Ray Data actors
    (:func:`routecast.router.ray_embed.embed_with_ray`; ``workers`` actors, default as many as the
    cluster's CPUs allow). ``fill_cache`` then stores every vector in the embedding cache, so
    training on these prompts encodes nothing. Returns a summary (rows, files, seconds, engine).
    """
    import time

    _check(engine, workers)
    from routecast.router.encoders import get_encoder

    start = time.perf_counter()
    out = Path(out)
    if engine == "ray":
        from routecast.router.ray_embed import embed_with_ray

        summary = embed_with_ray(input_path, out, encoder=encoder, workers=workers, ray_address=ray_address,
                                 batch_size=batch_size)
    else:
        summary = _embed_local(input_path, out, encoder=encoder, workers=workers or 1, batch_size=batch_size,
                               progress=progress)
    summary["embed_seconds"] = time.perf_counter() - start
    if fill_cache:
        summary["cached"] = fill_cache_from(out, get_encoder(encoder))
    summary.update({"engine": engine, "encoder": encoder, "output": str(out)})
    return summary


def _embed_local(input_path, out: Path, *, encoder: str, workers: int, batch_size: int,
                 progress: bool) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from routecast.progress import Progress

    ids, prompts = read_prompt_rows(input_path)
    starts = list(range(0, len(prompts), SHARD_ROWS))
    with complete_folder(out) as temp, Progress(f"embed ({encoder})", total=len(prompts), unit="prompts",
                                                enabled=progress) as bar:
        temp.mkdir()

        def write(index: int, start: int, vectors: np.ndarray) -> None:
            stop = start + len(vectors)
            pq.write_table(embedding_table(ids[start:stop], prompts[start:stop], vectors),
                           temp / f"part-{index:05d}.parquet")
            bar.advance(len(vectors))

        if workers == 1:
            from routecast.router.encoders import get_encoder

            model = get_encoder(encoder)
            for index, start in enumerate(starts):
                write(index, start, model.encode(prompts[start:start + SHARD_ROWS], batch_size=batch_size))
        else:
            import multiprocessing

            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_load_worker_encoder, initargs=(encoder,)) as pool:
                futures = [pool.submit(_encode_in_worker, prompts[s:s + SHARD_ROWS], batch_size) for s in starts]
                for index, (start, future) in enumerate(zip(starts, futures)):
                    write(index, start, future.result())
        checked = check_rows(temp, len(prompts))
        files = len(list(temp.glob("*.parquet")))
    return {"rows": checked["rows"], "files": files, "duplicates_dropped": 0, "workers": workers}


def fill_cache_from(folder: str | os.PathLike, encoder, cache_dir: str | os.PathLike | None = None) -> int:
    """Put every ``key``/``embedding`` of an ``embed`` output folder into ``encoder``'s embedding
    cache (one cache shard per output file); returns the number of vectors stored."""
    import pyarrow.parquet as pq

    cache = EmbeddingCache(encoder, cache_dir)
    stored = 0
    for file in sorted(Path(folder).glob("*.parquet")):
        table = pq.read_table(file, columns=["key", "embedding"])
        if len(table) == 0:
            continue
        column = table.column("embedding").combine_chunks()
        dim = column.type.list_size
        if dim != int(encoder.dim):
            raise DataError(f"embeddings have dim {dim}, encoder {encoder.name!r} has dim {encoder.dim}",
                            path=str(file), column="embedding")
        vectors = column.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
        keys = [k.encode("ascii") for k in table.column("key").to_pylist()]
        cache.put(keys, vectors)
        stored += len(keys)
    return stored


def read_embeddings(folder: str | os.PathLike) -> tuple[list[Any], np.ndarray]:
    """``(ids, vectors)`` of an ``embed`` output folder, sorted by file name then row."""
    import pyarrow.parquet as pq

    ids: list[Any] = []
    blocks = []
    for file in sorted(Path(folder).glob("*.parquet")):
        table = pq.read_table(file)
        ids += table.column("id").to_pylist()
        column = table.column("embedding").combine_chunks()
        blocks.append(column.values.to_numpy(zero_copy_only=False).reshape(len(table), column.type.list_size))
    return ids, (np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32))
