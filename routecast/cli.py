"""The ``routecast`` command: assembles the commands of every area.

Each area has one ``routecast/<area>/commands.py`` of small ``Annotated`` functions and a
``COMMANDS`` table (command name -> function; ``"data inspect"`` puts ``inspect`` in the ``data``
group, whose help is ``GROUPS["data"]``). This module is the only wiring: every command is
registered the same way and wrapped by :func:`routecast.cli_options.run_cli`, so routecast's own
errors print as one line with exit code 2. The ``commands.py`` modules import only typer at
module level, so ``routecast --help`` stays fast.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Optional

import typer

from routecast.cli_options import run_cli

AREAS = ("data", "training", "cascade", "serving")
#: help strings are plain text: with Rich markup, "[in, out]" or "[default: 8000]" inside a help
#: string read as markup tags and vanished ("--price-table ... {"model": }", "TCP port .")
HELP_MARKUP = None

app = typer.Typer(
    name="routecast",
    help=("Learn which LLM should answer each query (routing) and when to escalate a cheap "
          "model's answer (cascading), from logged query-outcome data; export and serve the result.\n\n"
          "Start with: routecast datasets; routecast data inspect llmrouter_9models; "
          "routecast evaluate --data llmrouter_9models --routers knn,mlp,best-single --out runs/eval"),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
)


def _print_version(value: bool) -> None:
    if value:
        from routecast import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_print_version, is_eager=True,
                                           help="Print the routecast version and exit."),
) -> None:
    """routecast: learned LLM routing and cascades."""


def register_area(root: typer.Typer, module) -> None:
    """Add one area's ``COMMANDS`` (and ``GROUPS``) to ``root``."""
    groups: dict[str, typer.Typer] = {}
    for name, fn in module.COMMANDS.items():
        group, _, command = name.rpartition(" ")
        target = root
        if group:
            if group not in groups:
                groups[group] = typer.Typer(name=group, help=getattr(module, "GROUPS", {}).get(group),
                                            no_args_is_help=True, rich_markup_mode=HELP_MARKUP)
                root.add_typer(groups[group], name=group)
            target = groups[group]
        target.command(command)(run_cli(fn, name))


for _area in AREAS:
    register_area(app, importlib.import_module(f"routecast.{_area}.commands"))


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """click's exception base: typer >= 0.2x vendors click (its errors derive from TyperException)."""
    types: list[type[BaseException]] = [typer.TyperException]
    try:
        import click

        types.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer without a separate click
        pass
    return tuple(types)


_PYTHON_FORMATWARNING = warnings.formatwarning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as the CLI prints it: ``warning: MESSAGE`` (routecast's own warnings are facts
    about the user's data; the source line that raised them means nothing to the user)."""
    from routecast.errors import RoutecastWarning

    if issubclass(category, RoutecastWarning):
        return f"warning: {message}\n"
    return _PYTHON_FORMATWARNING(message, category, filename, lineno, line)


def main(args: Optional[list[str]] = None) -> None:
    """Run the CLI (the ``routecast`` console script).

    Usage errors (a missing option, a value that does not parse) print one line and exit 2, like
    routecast's own errors (:func:`routecast.cli_options.run_cli`); a bare group prints its help.
    """
    import sys

    warnings.formatwarning = _one_line_warning
    try:
        code = app(args=args, prog_name="routecast", standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except _usage_error_types() as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `routecast` or `routecast data` alone
            typer.echo(exc.format_message(), err=True)
        else:
            hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
