"""``routecast tune`` and ``routecast calibrate`` (registered by routecast/training/cli.py).

Only typer is imported at module level; optuna, mlflow, pandas and torch load inside the
commands so ``routecast --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from routecast.errors import ConfigError
from routecast.router.encoders.default import DEFAULT_ENCODER

_TRACK_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)"


def _parse_set(items: list[str] | None) -> dict:
    """``--set max_epochs=30`` -> {"max_epochs": 30} (values parsed as JSON when they can be)."""
    import json

    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set expects NAME=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def tune_command(
    data: Annotated[str, typer.Option("--data", help="built-in log name or path to a log file")],
    router: Annotated[str, typer.Option("--router", help="router to tune (its declared search_space)")],
    trials: Annotated[int, typer.Option("--trials", help="total finished trials the study should hold "
                                        "(a resumed study runs only the missing ones)")] = 20,
    objective: Annotated[str, typer.Option("--objective", help="aiq | quality@budget | cost@quality "
                                           "(measured on the validation split)")] = "aiq",
    budget: Annotated[Optional[float], typer.Option("--budget", help="USD per query, for quality@budget")] = None,
    target: Annotated[Optional[float], typer.Option("--target", help="mean quality, for cost@quality")] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help="optuna storage, e.g. sqlite:///tune.db "
                                                   "(default: sqlite:///OUT/optuna.db, resumable)")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="study name (default: routecast-ROUTER-OBJECTIVE)")] = None,
    encoder: Annotated[Optional[str], typer.Option("--encoder", help=f"prompt encoder spec (default: {DEFAULT_ENCODER})")] = None,
    seed: Annotated[int, typer.Option("--seed", help="split and sampler seed")] = 0,
    val: Annotated[float, typer.Option("--val", help="validation share of prompts")] = 0.1,
    test: Annotated[float, typer.Option("--test", help="test share of prompts (never read by tuning)")] = 0.2,
    limit: Annotated[Optional[int], typer.Option("--limit", help="use a seeded subset of N prompts")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="stop starting trials after S seconds")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="fixed hyperparameter NAME=VALUE (repeatable)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="output folder (default: runs/tune-ROUTER)")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help=_TRACK_HELP)] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="do not log to MLflow")] = False,
) -> None:
    """Tune a router's hyperparameters with optuna on the validation split; write OUT/best_config.json
    (use it with: routecast train --config OUT/best_config.json)."""
    from routecast.atomic import write_json
    from routecast.training.pipeline import prepare
    from routecast.training.tracking import Tracker
    from routecast.training.tune import finite_json, objective_direction, save_router_config, tune

    objective_direction(objective)  # fail on a typo before any work
    fixed = _parse_set(set_)
    out = out or Path("runs") / f"tune-{router}"
    default_storage = storage is None
    if default_storage:
        storage = f"sqlite:///{(out / 'optuna.db').resolve()}"
    with Tracker(tracking_uri, run_name=f"tune-{router}", enabled=not no_track,
                 tags={"routecast.kind": "tune"}) as tracker:  # probes the URI before any work
        if default_storage:
            out.mkdir(parents=True, exist_ok=True)
        prepared = prepare(data, encoder=encoder or DEFAULT_ENCODER, val=val, test=test, seed=seed, limit=limit)
        result = tune(prepared, router, n_trials=trials, objective=objective, budget=budget, target=target,
                      storage=storage, study_name=study, seed=seed, tracker=tracker if tracker.enabled else None,
                      timeout=timeout, fixed_params=fixed)
        config_path = save_router_config(out / "best_config.json", result)
        write_json(out / "tune.json", finite_json(result.to_dict()))
        if tracker.enabled:
            tracker.log_artifact(config_path)
            tracker.log_artifact(out / "tune.json")
    _print_tune(result, config_path)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def _print_tune(result, config_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    names = sorted({k for t in result.trials for k in t["params"]})
    table = Table(title=f"{result.router}: {result.objective} on the validation split "
                        f"({result.direction}), study {result.study_name}")
    table.add_column("trial", justify="right")
    table.add_column("state")
    table.add_column("value", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("fit s", justify="right")
    best_number = next((t["number"] for t in result.trials
                        if t["state"] == "COMPLETE" and t["value"] == result.best_value), None)
    for t in result.trials:
        style = "bold green" if t["number"] == best_number else None
        label = f"{t['number']}{' (default)' if t['default'] else ''}"
        table.add_row(label, t["state"].lower(), _fmt(t["value"]),
                      *[_fmt(t["params"].get(n)) for n in names], _fmt(t.get("fit_seconds"), 2), style=style)
    console.print(table)
    default = "" if result.default_value is None else f" (defaults: {_fmt(result.default_value)})"
    console.print(f"best {result.objective} = {_fmt(result.best_value)}{default} with "
                  f"{result.best_params}; {result.n_trials_run} new trial(s), {result.n_trials_total} in the study, "
                  f"{result.seconds:.1f} s")
    console.print(f"wrote {config_path}  ->  routecast train --config {config_path} ...")


def calibrate_command(
    run_dir: Annotated[Path, typer.Argument(help="a routecast train --out folder (with run.json and router/)")],
    budget: Annotated[Optional[float], typer.Option("--budget", help="USD per query on average")] = None,
    strong_share: Annotated[Optional[float], typer.Option("--strong-share", help="share of calls to the most expensive model")] = None,
    target_quality: Annotated[Optional[float], typer.Option("--target-quality", help="mean quality to reach at the lowest cost")] = None,
    match_model: Annotated[Optional[str], typer.Option("--match-model", help="reach this model's validation quality at the lowest cost")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help=_TRACK_HELP)] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="do not log to MLflow")] = False,
) -> None:
    """Calibrate a trained router on its validation split so --budget/--strong-share/--target-quality
    map to a measured lam; check the result on the test split; save it in the checkpoint."""
    from routecast.training.calibrate import calibrate_run
    from routecast.training.tracking import Tracker

    with Tracker(tracking_uri, run_name=f"calibrate-{run_dir.name}", enabled=not no_track,
                 tags={"routecast.kind": "calibrate"}) as tracker:
        result = calibrate_run(run_dir, budget=budget, strong_share=strong_share,
                               target_quality=target_quality, match_model=match_model,
                               tracker=tracker if tracker.enabled else None)
    _print_calibration(result, run_dir)


def _print_calibration(result: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    metric = result["metric"]
    req = ", ".join(f"{k}={v}" for k, v in result["request"].items())
    table = Table(title=f"calibration of {run_dir} ({req}; lam = {result['lam']:.6g})")
    for col in ("split", "prompts", f"requested {metric}", "achieved cost $/query", "achieved quality",
                "strong share"):
        table.add_column(col, justify="right")
    for label, key in (("calibration (val)", "calibration_split"), ("test", "test_split")):
        point = result[key]
        table.add_row(label, str(point["n_prompts"]), _fmt(result["requested"], 6), _fmt(point["cost"], 6),
                      _fmt(point["quality"]), _fmt(point["strong_share"]))
    console.print(table)
    console.print(f"strong model: {result['strong_model']}; calibration saved in {result['checkpoint']} "
                  f"and {run_dir / 'calibration.json'}")


def register(app: typer.Typer) -> None:
    """Add ``tune`` and ``calibrate`` to the routecast CLI."""
    app.command("tune")(tune_command)
    app.command("calibrate")(calibrate_command)
