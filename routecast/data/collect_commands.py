"""``routecast collect`` and ``routecast score``: build an outcome log from your own endpoints.

Listed in :data:`routecast.data.commands.COMMANDS`; only typer is imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from routecast.cli_options import ColumnMap, PriceTableFile, split_names


def collect(
    prompts: Annotated[str, typer.Argument(metavar="PROMPTS", help=(
        "Prompt file (.jsonl/.csv/.parquet) with a 'prompt' column (or OpenAI chat 'messages'); every other "
        "column (a 'reference' answer, 'benchmark'...) is carried into the log."))],
    endpoints: Annotated[Path, typer.Option("--endpoints", "-e", help=(
        "YAML/JSON file of OpenAI-compatible endpoints, model name -> {base_url, api_key_env, model, "
        "concurrency, requests_per_second, max_tokens, temperature} (a `serve --backends` file works)."))],
    out: Annotated[Path, typer.Option("--out", "-o", help=(
        "The long-format log to write (.jsonl/.csv/.parquet), atomically; its journal "
        "<out>.journal.jsonl makes a rerun resume."))],
    price_table: PriceTableFile = None,
    column_map: ColumnMap = None,
    models: Annotated[Optional[str], typer.Option("--models", help="Only these endpoints, comma-separated.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight over all endpoints.")] = 32,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries per cell on 429/5xx/connection errors.")] = 5,
    backoff: Annotated[float, typer.Option("--backoff", min=0.0, help="First retry delay in seconds (doubles).")] = 0.5,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar in prompts.")] = True,
    engine: Annotated[str, typer.Option("--engine", help=(
        "local (this process) or ray (Ray tasks, one per shard of prompts, on the cluster of --ray-address; "
        "needs routecast[ray] and an output folder every node shares)."))] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDR", help=(
        "Ray cluster to use (host:port, ray://host:port or auto; default: $RAY_ADDRESS, else a new local "
        "cluster)."))] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help=(
        "Shards sent at once with --engine ray; each gets 1/N of every concurrency and rate limit "
        "[default: the cluster's CPUs, capped by the limits]."))] = None,
) -> None:
    """Send every prompt to every endpoint and write the outcome log (score empty until `routecast score`).

    Resumable: rerun the same command after a kill; answers already journaled are not sent again.

    Example: routecast collect prompts.jsonl -e endpoints.yaml --price-table prices.json -o collected.jsonl
    """
    from routecast.errors import ConfigError

    if engine not in ("local", "ray"):
        raise ConfigError(f"engine must be local or ray, got {engine!r}")
    if engine == "local" and (workers is not None or ray_address is not None):
        raise ConfigError("--workers and --ray-address need --engine ray")
    common = dict(prices=price_table, columns=column_map, models=split_names(models), concurrency=concurrency,
                  retries=retries, backoff=backoff, progress=progress)
    if engine == "ray":
        from routecast.data.ray_collect import collect_with_ray

        result = collect_with_ray(prompts, endpoints, out, workers=workers, ray_address=ray_address, **common)
    else:
        from routecast.data.collect import collect as run

        result = run(prompts, endpoints, out, **common)
    where = f" on ray in {result.shards} shards" if engine == "ray" and result.shards else ""
    typer.echo(f"{result.out}: {result.cells:,} cells ({result.prompts:,} prompts x {len(result.models)} models; "
               f"{result.sent_cells:,} sent{where}, {result.resumed_cells:,} from the journal) in "
               f"{result.seconds:.1f} s")


def score(
    log: Annotated[str, typer.Argument(metavar="LOG", help="A collected log (prompt, model, response columns).")],
    scorer: Annotated[str, typer.Option("--scorer", "-s", help=(
        "exact | choice | numeric | regex | entry:NAME (entry point in group routecast.scorers) | judge "
        "(MT-Bench 1-10) | judge-pairwise (writes a preference log)."))],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scored log to write (.jsonl/.csv/.parquet), atomically.")],
    reference: Annotated[str, typer.Option("--reference", help="Column holding the expected answer.")] = "reference",
    pattern: Annotated[Optional[str], typer.Option("--pattern", help="Regular expression for --scorer regex.")] = None,
    judge_endpoints: Annotated[Optional[Path], typer.Option("--judge-endpoints", help=(
        "Endpoints file holding the judge (for judge scorers)."))] = None,
    judge_model: Annotated[Optional[str], typer.Option("--judge-model", help=(
        "Which endpoint of --judge-endpoints judges (needed when it has several)."))] = None,
    judge_cache: Annotated[Optional[Path], typer.Option("--judge-cache", help=(
        "Judge cache file (default <out>.judge-cache.jsonl); shared caches save judge calls."))] = None,
    reference_model: Annotated[Optional[str], typer.Option("--reference-model", help=(
        "judge-pairwise: compare every model with this one only (default: every pair)."))] = None,
    column_map: ColumnMap = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rescore rows that already have a score.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Turn responses into scores (or pairwise preferences) so the log can train a router.

    Example: routecast score collected.jsonl --scorer numeric -o scored.jsonl
    """
    from routecast.data.score import judge_pairs, score_log
    from routecast.errors import ConfigError

    judge = scorer in ("judge", "judge-pairwise")
    if judge and judge_endpoints is None:
        raise ConfigError(f"scorer {scorer!r} needs --judge-endpoints")
    if scorer == "regex" and pattern is None:
        raise ConfigError("scorer 'regex' needs --pattern")
    if scorer == "judge-pairwise":
        result = judge_pairs(log, judge_endpoints, out, model=judge_model, reference_model=reference_model,
                             cache=judge_cache, columns=column_map)
        typer.echo(f"{result.out}: {result.rows:,} judged pairs ({result.judge_calls:,} judge calls, "
                   f"{result.judge_cached:,} from the cache)")
        return
    params = {"pattern": pattern} if scorer == "regex" else {}
    if judge:
        params = {"endpoints": judge_endpoints, "model": judge_model, "cache": judge_cache}
    result = score_log(log, scorer, out, reference=reference, columns=column_map, overwrite=overwrite,
                       progress=progress, **params)
    mean = "-" if result.mean_score is None else f"{result.mean_score:.4f}"
    extra = f", {result.judge_calls:,} judge calls, {result.judge_cached:,} cached" if judge else ""
    typer.echo(f"{result.out}: {result.scored:,} rows scored, {result.kept:,} kept, {result.no_response:,} "
               f"without a response; mean score {mean}{extra}")
