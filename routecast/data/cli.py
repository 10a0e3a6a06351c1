"""``routecast data ...`` and ``routecast datasets``: look at outcome logs before training on them.

Only typer is imported at module level; pandas comes in with the command bodies.
"""

from __future__ import annotations

import typer

data_app = typer.Typer(
    name="data",
    help=("Look at query-outcome logs (one row per prompt x model with a score in [0, 1]). "
          "A log is a .parquet/.csv/.jsonl/.json file, a folder holding data.parquet, or a built-in "
          "name (see `routecast datasets`)."),
    no_args_is_help=True,
)


@data_app.command("inspect")
def inspect_cmd(
    source: str = typer.Argument(..., metavar="PATH|NAME",
                                 help="Log file, folder with data.parquet, or built-in dataset name."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of tables."),
    format: str = typer.Option(None, "--format", help="Force the table shape: long or wide (default: detect)."),
) -> None:
    """Summarise a log: prompts, models, mean score and cost per model, best single model,
    oracle quality (the ceiling of any router), missing cells, benchmarks.

    Example: routecast data inspect llmrouter_9models
    """
    import json

    from routecast.data.inspect import render_summary, summarize
    from routecast.data.loaders import load_log

    summary = summarize(load_log(source, format=format))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from rich.console import Console

    Console().print(render_summary(summary))


def datasets_cmd() -> None:
    """List the datasets shipped with routecast (usable by name wherever a log path is accepted)."""
    from rich.console import Console
    from rich.table import Table

    from routecast.data.builtin import builtin_catalog, builtin_names

    catalog = builtin_catalog()
    table = Table(title="built-in datasets (load_log(name) / routecast data inspect NAME)", title_justify="left")
    for col in ("name", "prompts", "models", "licence", "description"):
        table.add_column(col, justify="right" if col in ("prompts", "models") else "left")
    for name in builtin_names():
        info = catalog.get(name, {})
        table.add_row(name, f"{info.get('prompts', '?'):,}" if isinstance(info.get("prompts"), int) else "?",
                      str(info.get("models", "?")), str(info.get("licence", "?")), str(info.get("description", "")))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``data`` group and the top-level ``datasets`` command to the routecast CLI."""
    app.add_typer(data_app, name="data")
    app.command("datasets")(datasets_cmd)
