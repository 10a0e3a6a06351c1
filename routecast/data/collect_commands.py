"""``routecast score``: turn the responses of a collected log into scores.

Listed in :data:`routecast.data.commands.COMMANDS`; only typer is imported at module level.
``routecast collect`` is in :mod:`routecast.training.collect_commands` (its ``--fill`` mode
chooses cells with a router's beliefs, which the data layer may not import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from routecast.cli_options import ColumnMap


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
