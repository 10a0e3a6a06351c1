"""Commands of the data area: ``routecast datasets`` and ``routecast data inspect``.

Look at outcome logs before training on them. Each command parses, calls one library function and
prints; only typer is imported at module level (pandas comes with the command bodies).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from routecast.cli_options import DATA_FILES, print_table

GROUPS = {"data": ("Look at query-outcome logs (one row per prompt x model with a score in [0, 1]). "
                   "A log is a .parquet/.csv/.jsonl/.json file, a folder holding data.parquet, or a built-in "
                   "name (see `routecast datasets`).")}


def inspect(
    source: Annotated[str, typer.Argument(metavar="PATH|NAME",
                                          help="Log file, folder with data.parquet, or built-in dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of tables.")] = False,
    format: Annotated[Optional[str], typer.Option("--format", help="Force the table shape: long or wide "
                                                  "(default: detect).")] = None,
    files: dict = DATA_FILES,
) -> None:
    """Summarise a log: prompts, models, mean score and cost per model, best single model,
    oracle quality (the ceiling of any router), missing cells, benchmarks.

    Example: routecast data inspect llmrouter_9models
    """
    import json

    from routecast.data.inspect import summarize, summary_tables
    from routecast.data.preferences import load_data

    log = load_data(source, **files, format=format)
    summary = summarize(log, prices=files["prices"])
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for table in summary_tables(summary):
        print_table(**table)


def datasets() -> None:
    """List the datasets shipped with routecast (usable by name wherever a log path is accepted)."""
    from routecast.data.builtin import builtin_table

    print_table(**builtin_table())


def from_decisions(
    decision_log: Annotated[str, typer.Argument(metavar="DECISION_LOG", help="The server's decision log "
                                                "(serve --decision-log PATH --log-text).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Bandit outcome log to write (.jsonl/.csv/.parquet).")],
) -> None:
    """Turn a decision log into an outcome log in which only the chosen cells are observed
    (bandit feedback), with each decision's propensity; train on it with `routecast train --data`."""
    from routecast.data.decision_log import write_bandit_log

    done = write_bandit_log(decision_log, out)
    typer.echo(f"wrote {done['n_requests']} scored decisions ({len(done['models'])} models, mean propensity "
               f"{done['mean_propensity']:.3f}) -> {out}")


from routecast.data.collect_commands import score  # noqa: E402 - typer-only module

#: command name -> function ("data inspect": command inspect in the data group); registered by routecast/cli.py
COMMANDS = {"datasets": datasets, "data inspect": inspect, "data from-decisions": from_decisions, "score": score}
