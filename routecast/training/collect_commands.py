"""``routecast collect``: build an outcome log from your own endpoints, or fill a traffic log.

Listed in :data:`routecast.training.commands.COMMANDS`; only typer is imported at module level.
It sits in the training area because ``--fill`` values cells with a router's beliefs
(:mod:`routecast.training.fill`); the sending itself is the data layer's collector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from routecast.cli_options import ColumnMap, Encoder, PriceTableFile, split_names
from routecast.router.encoders.default import DEFAULT_ENCODER


def collect(
    prompts: Annotated[Optional[str], typer.Argument(metavar="PROMPTS", help=(
        "Prompt file (.jsonl/.csv/.parquet) with a 'prompt' column (or OpenAI chat 'messages'); every other "
        "column (a 'reference' answer, 'benchmark'...) is carried into the log. Not with --fill."))] = None,
    endpoints: Annotated[Path, typer.Option("--endpoints", "-e", help=(
        "YAML/JSON file of OpenAI-compatible endpoints, model name -> {base_url, api_key_env, model, "
        "concurrency, requests_per_second, max_tokens, temperature} (a `serve --backends` file works)."))] = ...,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help=(
        "The long-format log to write (.jsonl/.csv/.parquet), atomically; its journal "
        "<out>.journal.jsonl makes a rerun resume. With --fill: default the LOG itself."))] = None,
    fill: Annotated[Optional[str], typer.Option("--fill", metavar="LOG", help=(
        "A traffic log (long format, one model per request is fine): request only the missing (prompt, model) "
        "cells whose answers would most change the router's decisions, within --budget, and append them "
        "to the log unscored (then `routecast score`). Never a prompt with a truthy do_not_resend column."))] = None,
    budget: Annotated[Optional[float], typer.Option("--budget", metavar="USD", min=0.0, help=(
        "--fill: the most the chosen cells may cost, estimated from each model's mean logged (or "
        "--price-table) cost per call."))] = None,
    price_table: PriceTableFile = None,
    column_map: ColumnMap = None,
    models: Annotated[Optional[str], typer.Option("--models", help="Only these endpoints, comma-separated.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight over all endpoints.")] = 32,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries per cell on 429/5xx/connection errors.")] = 5,
    backoff: Annotated[float, typer.Option("--backoff", min=0.0, help="First retry delay in seconds (doubles).")] = 0.5,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar in prompts.")] = True,
    engine: Annotated[str, typer.Option("--engine", help=(
        "local (this process) or ray (Ray tasks, one per shard of prompts, on the cluster of --ray-address; "
        "needs routecast[ray] and an output folder every node shares). --fill runs locally."))] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDR", help=(
        "Ray cluster to use (host:port, ray://host:port or auto; default: $RAY_ADDRESS, else a new local "
        "cluster)."))] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help=(
        "Shards sent at once with --engine ray; each gets 1/N of every concurrency and rate limit "
        "[default: the cluster's CPUs, capped by the limits]."))] = None,
    encoder: Encoder = DEFAULT_ENCODER,
    value: Annotated[Optional[str], typer.Option("--value", metavar="prompt|group", help=(
        "--fill: what a cell is worth to. prompt: a router that decides per prompt (linear, mlp, knn...): "
        "a ridge belief over the prompt embedding, valued where prompts like the cell's are many and the "
        "decision close; group: a per-benchmark (or cluster) prior (cluster-prior, task-prior) [default: "
        "prompt]."))] = None,
    seed: Annotated[int, typer.Option("--seed", help="--fill: seed of the clusters and of the prompt order.")] = 0,
) -> None:
    """Send every prompt to every endpoint and write the outcome log (score empty until `routecast score`);
    or, with --fill LOG --budget USD, fill the traffic log LOG where it matters.

    Resumable: rerun the same command after a kill; answers already journaled are not sent again.

    Example: routecast collect prompts.jsonl -e endpoints.yaml --price-table prices.json -o collected.jsonl

    Example: routecast collect --fill traffic.jsonl --budget 5 -e endpoints.yaml
    """
    from routecast.errors import ConfigError

    if engine not in ("local", "ray"):
        raise ConfigError(f"engine must be local or ray, got {engine!r}")
    if engine == "local" and (workers is not None or ray_address is not None):
        raise ConfigError("--workers and --ray-address need --engine ray")
    common = dict(prices=price_table, columns=column_map, models=split_names(models), concurrency=concurrency,
                  retries=retries, backoff=backoff, progress=progress)
    if fill is not None:
        if prompts is not None or budget is None or engine != "local":
            raise ConfigError("--fill LOG takes the prompts from LOG: give --budget USD, no PROMPTS file, and the "
                              "local engine")
        _fill(fill, endpoints, budget, out, common, encoder=encoder, seed=seed, value=value)
        return
    if prompts is None or out is None:
        raise ConfigError("collect needs a PROMPTS file and --out (or --fill LOG --budget USD)")
    if budget is not None:
        raise ConfigError("--budget goes with --fill")
    if value is not None:
        raise ConfigError("--value goes with --fill")
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


def _fill(log: str, endpoints: Path, budget: float, out: Optional[Path], common: dict, *, encoder: str,
          seed: int, value: Optional[str]) -> None:
    from routecast.training.fill import DEFAULT_VALUE, fill_log

    result = fill_log(log, endpoints, budget, out=out, encoder=encoder, seed=seed, value=value or DEFAULT_VALUE,
                      **common)
    plan, got = result.plan, result.collected
    typer.echo(f"chose {len(plan.cells):,} missing cells by value of information per {plan.value} (estimated "
               f"{plan.estimated_cost:.6g} "
               f"of {plan.budget:.6g} USD; groups: {plan.by}); {got.sent_cells:,} sent, {got.resumed_cells:,} from "
               f"the journal; {got.cells:,} rows appended -> {got.out}")
    for group, per_model in sorted(plan.per_group.items()):
        typer.echo(f"  {group}: " + ", ".join(f"{m} {k}" for m, k in sorted(per_model.items())))
    typer.echo(f"next: routecast score {got.out} -s SCORER -o SCORED (labels the appended rows)")
