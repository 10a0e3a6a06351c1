"""CLI of the cascade area: ``routecast cascade``.

Only typer is imported at module level; numpy, pandas and the encoders load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

DATA_HELP = "A built-in dataset name or a path to a .parquet/.csv/.jsonl outcome log."


def register(app: typer.Typer) -> None:
    @app.command()
    def cascade(
        data: str = typer.Option(..., "--data", "-d", help=DATA_HELP),
        chain: Optional[str] = typer.Option(
            None, help="Comma-separated models, cheapest first. Default: search chains of up to "
                       "--max-len models on the validation split (all models by cost when --max-len 0)."),
        deferral: str = typer.Option("ex-ante", help="ex-ante (router-predicted quality gap), ex-post "
                                     "(answer scorer on responses) or agreement (final-answer agreement)."),
        encoder: str = typer.Option("hashing:dim=256", help="Encoder spec: hashing[:dim=N], minilm, ..."),
        router: str = typer.Option("knn", help="Router behind ex-ante deferral."),
        models: Optional[str] = typer.Option(None, help="Comma-separated candidate models (default: all)."),
        max_len: int = typer.Option(3, help="Longest chain tried by the chain search (0: no search)."),
        prices: Optional[Path] = typer.Option(None, help="JSON price table {model: (in, out)} (USD per "
                                              "million tokens) for logs without logged costs."),
        val: float = typer.Option(0.2, help="Share of prompts for the validation split (thresholds)."),
        test: float = typer.Option(0.3, help="Share of prompts for the test split."),
        seed: int = typer.Option(0, help="Seed of the split and the bootstrap."),
        limit: Optional[int] = typer.Option(None, help="Use a seeded random subset of this many prompts."),
        n_boot: int = typer.Option(200, help="Bootstrap resamples for the AIQ intervals."),
        out: Path = typer.Option(Path("runs/cascade"), "--out", "-o", help="Folder for metrics.json and report.md."),
    ) -> None:
        """Train a cascade (deferral scorer on train, thresholds on validation) and compare it on
        the test split with every single model and the post-hoc ensembles (majority vote,
        best-of-n, oracle). Writes metrics.json and report.md into --out."""
        from routecast.cascade.evaluation import run_cascade_evaluation

        result = run_cascade_evaluation(
            data, chain=_split_names(chain), deferral=deferral, encoder=encoder, router=router,
            models=_split_names(models), max_len=max_len, prices=prices, val=val, test=test, seed=seed,
            limit=limit, n_boot=n_boot, out=out)
        for line in result.summary_lines():
            typer.echo(line)
        typer.echo(f"report: {result.report_path}")


def _split_names(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    return names or None
