"""Commands of the cascade area: ``routecast cascade``.

Parses, calls :func:`routecast.cascade.evaluation.run_cascade_evaluation` and prints. Only typer is
imported at module level; numpy, pandas and the encoders load inside the command. The split and
encoder defaults are those of every other command (one load -> split -> embed path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from routecast.cli_options import DATA_FILES, ESTIMATION, SPLIT, Data, Encoder, Out, split_names
from routecast.router.encoders.default import DEFAULT_ENCODER


def cascade(
    data: Data,
    chain: Annotated[Optional[str], typer.Option(help="Comma-separated models, cheapest first. Default: search "
                                                 "chains of up to --max-len models on the validation split (all "
                                                 "models by cost when --max-len 0).")] = None,
    deferral: Annotated[str, typer.Option(help="ex-ante (router-predicted quality gap), ex-post (answer scorer on "
                                          "responses) or agreement (final-answer agreement).")] = "ex-ante",
    encoder: Encoder = DEFAULT_ENCODER,
    router: Annotated[str, typer.Option(help="Router behind ex-ante deferral.")] = "knn",
    models: Annotated[Optional[str], typer.Option(help="Comma-separated candidate models (default: all).")] = None,
    max_len: Annotated[int, typer.Option(help="Longest chain tried by the chain search (0: no search).")] = 3,
    files: dict = DATA_FILES,
    estimation: dict = ESTIMATION,
    split: dict = SPLIT,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the AIQ intervals.")] = 200,
    out: Out = Path("runs/cascade"),
) -> None:
    """Train a cascade and compare it with every single model and the post-hoc ensembles.

    The deferral scorer learns on train and the thresholds on validation; the test split compares
    the cascade with each model, majority vote, best-of-n and the oracle. Writes metrics.json and
    report.md into --out.
    """
    from routecast.cascade.evaluation import run_cascade_evaluation

    result = run_cascade_evaluation(data, chain=split_names(chain), deferral=deferral, encoder=encoder,
                                    router=router, models=split_names(models), max_len=max_len, **files,
                                    **estimation, **split, n_boot=n_boot, out=out)
    for line in result.summary_lines():
        typer.echo(line)
    typer.echo(f"report: {result.report_path}")


#: command name -> function; registered by routecast/cli.py
COMMANDS = {"cascade": cascade}
