"""The ``routecast`` command.

Each area of the package registers its own commands (``routecast/<area>/cli.py`` exposes
``register(app)``); those modules import only typer at module level and pull in pandas, torch
or FastAPI inside the command bodies, so ``routecast --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from routecast.errors import RoutecastError

app = typer.Typer(
    name="routecast",
    help=("Learn which LLM should answer each query (routing) and when to escalate a cheap "
          "model's answer (cascading), from logged query-outcome data; export and serve the result.\n\n"
          "Start with: routecast datasets; routecast data inspect llmrouter_9models; "
          "routecast evaluate --data llmrouter_9models --routers knn,mlp,best-single --out runs/eval"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """routecast: learned LLM routing and cascades."""


@app.command()
def version() -> None:
    """Print the routecast version."""
    from routecast import __version__

    typer.echo(__version__)


def _register_areas() -> None:
    import importlib

    for area in ("data", "training", "cascade", "serving"):
        try:
            module = importlib.import_module(f"routecast.{area}.cli")
        except ModuleNotFoundError as exc:  # an area without commands yet
            if exc.name != f"routecast.{area}.cli":
                raise
            continue
        module.register(app)


_register_areas()


def main() -> None:
    """Run the CLI; routecast's own errors print as one line (exit 2), not a traceback."""
    try:
        app()
    except RoutecastError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
