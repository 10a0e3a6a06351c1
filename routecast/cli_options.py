"""The options every ``routecast`` command shares, defined once, and the two helpers all commands use.

Why one module: the same flag used to be spelled several ways (``--param`` vs ``--set``,
``--track/--no-track`` vs ``--no-track``) with different help texts. Each command of every
``routecast/<area>/commands.py`` now writes ``data: Data`` or ``params: Params = None`` and gets
the same name, short flag and help. A base module (stdlib + typer + rich only), so every layer may
import it; defaults that belong to a layer (the default encoder) stay in the command signature.

* :func:`run_cli` wraps a command so a :class:`~routecast.errors.RoutecastError` prints as one
  line on stderr with exit code 2 (never a traceback); commands repeat no try/except.
* :func:`parse_params` is the one parser of ``--param/-p KEY=VALUE``.
* :func:`print_table` is the one table printer: rich on a terminal, Markdown (values never cut
  to "0.62…") when stdout is a pipe or a CI log.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, Sequence

import typer

from routecast.errors import ConfigError, RoutecastError

DATA_HELP = ("Outcome log: a built-in dataset name (see `routecast datasets`), a .parquet/.csv/.jsonl/.json "
             "file or a folder holding data.parquet.")
ENCODER_HELP = ("Prompt encoder: static (distilled from MiniLM, fast), minilm (bundled all-MiniLM-L6-v2), "
                "onnx[:quantize=int8], hashing[:dim=N] (no weights), st:/path/to/sentence-transformers-folder, "
                "static:/folder, or trained-static[:head=mlp,dim=N] (static table fine-tuned on this "
                "command's train split).")
TRACKING_URI_HELP = ("MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the "
                     "working directory).")

Data = Annotated[str, typer.Option("--data", "-d", help=DATA_HELP)]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; files written atomically).")]
Encoder = Annotated[str, typer.Option("--encoder", help=ENCODER_HELP)]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the split, the router and the bootstrap.")]
Params = Annotated[Optional[list[str]], typer.Option(
    "--param", "-p", metavar="KEY=VALUE",
    help="Hyperparameter KEY=VALUE (repeatable); VALUE is read as JSON when it parses (10, 0.5, true, [1,2]).")]
Val = Annotated[float, typer.Option(help="Share of prompts for the validation (calibration) split.")]
Test = Annotated[float, typer.Option(help="Share of prompts for the test split (never read by fitting or tuning).")]
UseLoggedSplit = Annotated[bool, typer.Option(help="Respect the log's own `split` column.")]
Limit = Annotated[Optional[int], typer.Option(help="Use a seeded random subset of this many prompts.")]
ColumnMap = Annotated[Optional[str], typer.Option(
    "--map", metavar="NAME=COLUMN,...",
    help=("Read a file whose columns are named your way: routecast name = your column, e.g. "
          "'prompt=Question,model=LLM,score=Accuracy,cost=\"Cost ($)\"' (a <file>.card.yaml or dataset.yaml "
          "beside the file may say the same)."))]
PriceTableFile = Annotated[Optional[Path], typer.Option(
    "--price-table", help=("JSON (or .yaml) file of USD per million input/output tokens per model, "
                           "{\"model\": [in, out]}; fills costs a log does not record."))]
Duplicates = Annotated[str, typer.Option(
    "--duplicates", help=("Repeated (prompt, model) rows: mean (merge into their mean score and cost, counted), "
                          "first, last, or error."))]
Estimator = Annotated[str, typer.Option(
    "--estimator", help=("How a traffic log's val/test splits (too few prompts with every model's score) are "
                         "estimated from the logged cells: dr (doubly robust, default), dm (outcome model), "
                         "ips or snips (inverse-propensity weighted); the report names it."))]
Track = Annotated[bool, typer.Option("--track/--no-track", help="Log the run to MLflow.")]
TrackingUri = Annotated[Optional[str], typer.Option("--tracking-uri", help=TRACKING_URI_HELP)]


class OptionGroup:
    """Options several commands share, declared once: a command writes ``split: dict = SPLIT``
    and gets, instead of one parameter, every option of the group on its command line (typer
    reads the signature :func:`run_cli` builds), passed to it as one dict ``{"val": 0.1, ...}``.

    ``options`` maps a parameter name to ``(annotation, default)``, the annotation an
    ``Annotated[..., typer.Option(...)]`` as for any parameter.
    """

    def __init__(self, **options: tuple[Any, Any]):
        self.options = dict(options)

    def __repr__(self) -> str:
        return f"OptionGroup({', '.join(self.options)})"


#: the split of an outcome log (what ``prepare`` takes), shared by evaluate, train, tune, cascade...
SPLIT = OptionGroup(val=(Val, 0.1), test=(Test, 0.2), seed=(Seed, 0), use_logged_split=(UseLoggedSplit, False),
                    limit=(Limit, None))
#: how the val/test splits of a traffic log are estimated (``--estimator``): ``prepare(data, **estimation)``
ESTIMATION = OptionGroup(estimator=(Estimator, "dr"))
#: how to read a log whose columns, costs or repeats are the user's own (``--map``, ``--price-table``,
#: ``--duplicates``), named as the library takes them: ``prepare(data, **files)``
DATA_FILES = OptionGroup(columns=(ColumnMap, None), prices=(PriceTableFile, None), duplicates=(Duplicates, "mean"))
#: MLflow tracking of a run (on by default)
TRACKING = OptionGroup(track=(Track, True), tracking_uri=(TrackingUri, None))


def expand_option_groups(fn: Callable) -> tuple[Optional[inspect.Signature], dict[str, OptionGroup]]:
    """``fn``'s signature with each :class:`OptionGroup` default replaced by the group's options
    (in place, so ``--help`` lists them where the group stands), and the groups by name; (None,
    {}) when ``fn`` has no group."""
    if not any(isinstance(p.default, OptionGroup) for p in inspect.signature(fn).parameters.values()):
        return None, {}
    signature = inspect.signature(fn, eval_str=True)
    params, groups = [], {}
    for param in signature.parameters.values():
        if isinstance(param.default, OptionGroup):
            groups[param.name] = param.default
            params += [inspect.Parameter(name, param.kind, default=default, annotation=annotation)
                       for name, (annotation, default) in param.default.options.items()]
        else:
            params.append(param)
    return signature.replace(parameters=params), groups


def parse_params(items: Optional[Sequence[str]]) -> dict[str, Any]:
    """``["k=10", "weighting=similarity"]`` -> ``{"k": 10, "weighting": "similarity"}``.

    Values are JSON when they parse, else strings; whether a value fits the router's
    hyperparameter is checked by the router layer (``check_router_params``) before any training.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def split_names(text: Optional[str]) -> Optional[list[str]]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None or an empty list -> None (the library's default)."""
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    return names or None


def run_cli(fn: Callable, name: Optional[str] = None) -> Callable:
    """Wrap a command: a RoutecastError, or a file error a user can fix (permission denied, not a
    directory, read-only or full disk), becomes ``error: MESSAGE`` on stderr and exit code 2.

    So does a missing module of the training extra on the lean runtime install ("routecast train
    needs the training extra (...): pip install 'routecast[train]'"); ``name`` is the command as typed.
    """
    from routecast.atomic import file_errors
    from routecast.errors import missing_extra

    signature, groups = expand_option_groups(fn)

    @functools.wraps(fn)
    def command(*args, **kwargs):
        for group_name, group in groups.items():  # typer passes each option; the command takes the group
            kwargs[group_name] = {name: kwargs.pop(name) for name in group.options}
        try:
            with file_errors():
                return fn(*args, **kwargs)
        except RoutecastError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except ModuleNotFoundError as exc:
            error = missing_extra(exc, f"routecast {name or fn.__name__}")
            if error is None:
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None

    if signature is not None:
        command.__signature__ = signature
    return command


def is_terminal() -> bool:
    """True when stdout is an interactive terminal (rich tables may then fit the width)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                right: Sequence[str] = (), highlight: Optional[int] = None, markdown: Optional[bool] = None) -> None:
    """Print a table: rich on a terminal; a Markdown table (every value in full) otherwise.

    ``right`` names the right-aligned columns; ``highlight`` is the index of a row shown in bold
    green (marked ``**`` in Markdown). ``markdown`` forces the shape (default: not a terminal).
    """
    if markdown is None:
        markdown = not is_terminal()
    cells = [[str(c) for c in row] for row in rows]
    if markdown:
        lines = [f"### {_markdown_cell(title)}", ""] if title else []
        lines.append("| " + " | ".join(_markdown_cell(c) for c in columns) + " |")
        lines.append("|" + "|".join("---:" if c in right else "---" for c in columns) + "|")
        for i, row in enumerate(cells):
            shown = [_markdown_cell(c) for c in row]
            if i == highlight:
                shown = [f"**{c}**" if c else c for c in shown]
            lines.append("| " + " | ".join(shown) + " |")
        typer.echo("\n".join(lines) + "\n")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title) if title else None, title_justify="left")
    for col in columns:  # fold, never "…": a narrow terminal wraps a value instead of cutting it
        table.add_column(escape(col), justify="right" if col in right else "left", overflow="fold")
    for i, row in enumerate(cells):
        table.add_row(*[escape(c) for c in row], style="bold green" if i == highlight else None)
    Console().print(table)
