"""Commands of the training area: ``evaluate``, ``train``, ``routers``, ``demo``, ``tune``, ``calibrate``.

Each command parses its options, calls one function of :mod:`routecast.training.runs` (or the
registry) and prints with :func:`routecast.cli_options.print_table`. Only typer is imported at
module level; torch, optuna, mlflow and pandas load inside the commands so ``routecast --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from routecast.cli_options import (DATA_FILES, DATA_HELP, ESTIMATION, SPLIT, TRACKING, Data, Encoder, OptionGroup, Out,
                                   Params, Track, TrackingUri, parse_params, print_table, split_names)
from routecast.router.encoders.default import DEFAULT_ENCODER

CostRange = Annotated[Optional[str], typer.Option(metavar="LOW,HIGH", help="Pin AIQ's cost range (USD per query) "
                                                  "across runs (default: cheapest..most expensive single model).")]
Strong = Annotated[Optional[str], typer.Option(help="Strong model of APGR/CPT (default: best mean quality).")]
Weak = Annotated[Optional[str], typer.Option(help="Weak model of APGR/CPT (default: cheapest).")]
# Lightning's distribution of the torch routers (mlp, finetuned-encoder); see routecast.router.distributed
Devices = Annotated[int, typer.Option("--devices", help="Processes (or GPUs) per node for a Lightning router "
                                      "(mlp, finetuned-encoder); >1 needs --strategy ddp or ddp_spawn.")]
NumNodes = Annotated[int, typer.Option("--num-nodes", help="Machines taking part (Lightning; set NODE_RANK, "
                                       "MASTER_ADDR, MASTER_PORT on each).")]
Strategy = Annotated[str, typer.Option("--strategy", help="auto (one process), ddp (Lightning re-runs this "
                                       "command per rank) or ddp_spawn (ranks are spawned).")]
Accelerator = Annotated[str, typer.Option("--accelerator", help="cpu (gloo), gpu/cuda, mps or auto.")]
#: the Lightning distribution options, passed as ``{"devices", "num_nodes", "strategy", "accelerator"}``
DISTRIBUTION = OptionGroup(devices=(Devices, 1), num_nodes=(NumNodes, 1), strategy=(Strategy, "auto"),
                           accelerator=(Accelerator, "cpu"))
Reference = Annotated[Optional[str], typer.Option(help="Pairwise logs: report win rates against this model "
                                                  "(default: the model with most wins).")]
#: how evaluate and train score the test split: AIQ's cost range, APGR's pair, the pairwise reference
SCORING = OptionGroup(cost_range=(CostRange, None), strong=(Strong, None), weak=(Weak, None),
                      reference=(Reference, None))


def _scoring(options: dict) -> dict:
    """The :data:`SCORING` options as the library takes them (the cost range parsed)."""
    from routecast.training.runs import parse_cost_range

    return {**options, "cost_range": parse_cost_range(options["cost_range"])}


def not_run_lines(skipped: dict[str, str]) -> list[str]:
    """One ``not run:`` line per reason, naming every policy it stopped (six cascade kinds that
    all need responses are one line, not six)."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in skipped.items():
        by_reason.setdefault(str(reason), []).append(name)
    return [f"not run: {', '.join(names)}: {reason}" for reason, names in by_reason.items()]


def _print_run(run, *, footer: str) -> None:
    """The leaderboard tables, the policies not run (grouped by reason), ``footer`` and, last, the
    sentence saying whether learned routing beat the lookup table (when priors were compared)."""
    from routecast.training.tables import (leaderboard_footer, leaderboard_table, per_benchmark_table,
                                           routing_verdict, unranked_table)

    if run.pairwise is not None:  # a pairwise log: win rates against a reference model
        from routecast.evaluation.pairwise import pairwise_table

        print_table(**pairwise_table(run.pairwise))
        typer.echo(footer)
        return

    print_table(**leaderboard_table(run.result))
    if run.result.unranked():
        print_table(**unranked_table(run.result))
    if run.result.per_benchmark:
        print_table(**per_benchmark_table(run.result))
    typer.echo(leaderboard_footer(run.result))
    for line in not_run_lines(run.experiment.skipped):
        typer.echo(line)
    typer.echo(footer)
    verdict = routing_verdict(run.result)
    if verdict is not None:
        typer.echo(verdict)


def evaluate(
    data: Annotated[Optional[str], typer.Option("--data", "-d", help=DATA_HELP + " Needed unless --off-policy "
                                                "is given with checkpoint folders only.")] = None,
    routers: Annotated[str, typer.Option("--routers", "-r", help="Comma-separated router names "
                                         "(see `routecast routers`).")] = "knn,linear,mlp,best-single,random,oracle",
    encoder: Encoder = DEFAULT_ENCODER,
    out: Out = Path("runs/evaluate"),
    split: dict = SPLIT,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 200,
    skip: Annotated[Optional[str], typer.Option(help="With --routers all: routers to leave out "
                                                "(comma-separated).")] = None,
    cascades: Annotated[str, typer.Option(help="Also compare these cascade kinds, or 'all': ex-ante, ex-post, "
                                          "agreement, agreement-escalation, cascade-routing, smoothie, majority-vote, "
                                          "best-of-n, "
                                          "oracle-ensemble; kinds the data cannot run are listed with the reason.")] = "",
    ensembles: Annotated[bool, typer.Option("--ensembles/--no-ensembles", help="Also compare post-hoc ensembles "
                                            "(smoothie, majority vote, best-of-n, oracle).")] = False,
    scoring: dict = SCORING,
    files: dict = DATA_FILES,
    estimation: dict = ESTIMATION,
    tracking: dict = TRACKING,
    off_policy: Annotated[Optional[Path], typer.Option("--off-policy", metavar="DECISION_LOG", help="Instead: "
                          "estimate each of --routers (checkpoint folders, or names fitted on --data; 'shadow': the "
                          "decisions `serve --shadow` logged) on the server's logged, feedback-scored traffic (IPS, "
                          "SNIPS, DR with 95% intervals).")] = None,
    lam: Annotated[Optional[float], typer.Option(help="With --off-policy: route the candidates at this lam "
                                                 "(default: each one's default operating point).")] = None,
) -> None:
    """Fit several routers (and cascades) on the train split and compare them on the test split.

    Writes metrics.json, report.md (leaderboard) and PNG cost-quality plots into --out. On a
    pairwise preference log: win rate against --reference per router and lam, with intervals.
    """
    if off_policy is not None:
        from routecast.training.off_policy import evaluate_off_policy, off_policy_markdown

        typer.echo(off_policy_markdown(evaluate_off_policy(off_policy, split_names(routers), data=data, lam=lam,
                                                           n_boot=n_boot, seed=split["seed"])))
        return
    if data is None:
        from routecast.errors import ConfigError

        raise ConfigError("give --data (or --off-policy DECISION_LOG)")
    from routecast.training.runs import evaluate_to_folder

    run = evaluate_to_folder(data, routers, out=out, encoder=encoder, **split, n_boot=n_boot,
                             cascades=split_names(cascades) or (), ensembles=ensembles, **_scoring(scoring),
                             **tracking, **files, **estimation, skip=skip)
    plot = "" if run.pairwise is not None else f"\nplot:   {run.out / 'cost_quality.png'}"
    _print_run(run, footer=f"report: {run.report}{plot}")


def train(
    data: Data,
    out: Out,
    router: Annotated[Optional[str], typer.Option("--router", "-r", help="Router name, e.g. mlp, knn, linear.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="A JSON config {\"router\": ..., \"params\": {...}} "
                                                   "(e.g. from `routecast tune`); --param values override it.")] = None,
    param: Params = None,
    encoder: Encoder = DEFAULT_ENCODER,
    split: dict = SPLIT,
    scoring: dict = SCORING,
    files: dict = DATA_FILES,
    estimation: dict = ESTIMATION,
    tracking: dict = TRACKING,
    distribution: dict = DISTRIBUTION,
) -> None:
    """Train one router, calibrate it on validation, evaluate it on test, save a run folder.

    The run folder holds the router/ checkpoint, run.json, metrics.json, report.md and plots;
    `routecast export RUN_DIR` then makes a servable checkpoint of it. With --strategy ddp only
    rank 0 locks, writes and prints; the other ranks train their shard and exit quietly.
    """
    from contextlib import nullcontext

    from routecast.atomic import out_lock
    from routecast.router.distributed import is_rank_zero
    from routecast.training.runs import train_to_folder

    writer = is_rank_zero()
    with out_lock(out) if writer else nullcontext():  # a second `train` into the same --out fails at once
        run = train_to_folder(data, out=out, router=router, config=config, params=parse_params(param),
                              encoder=encoder, **split, **_scoring(scoring), **tracking, **files, **estimation,
                              distribution=distribution)
    if writer:
        _print_run(run, footer=f"strong model: {run.strong_model} (best mean quality on the training split; "
                               f"calibrate --strong-share counts calls to it)\n"
                               f"run folder: {run.out}  (report: {run.report})")


def routers() -> None:
    """List the routers: a1 learn a quality model from outcomes, a2 are baselines."""
    from routecast.training.tables import routers_table

    print_table(**routers_table())


def demo(
    out: Out = Path("demo-out"),
    encoder: Encoder = DEFAULT_ENCODER,
    track: Track = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """The main job on the built-in data: inspect it, train several routers, print the leaderboard."""
    from routecast.data import load_log
    from routecast.data.inspect import summarize, summary_tables
    from routecast.training.runs import DEMO_DATA, demo_to_folder

    for table in summary_tables(summarize(load_log(DEMO_DATA))):
        print_table(**table)
    run = demo_to_folder(out, encoder=encoder, track=track, tracking_uri=tracking_uri)
    _print_run(run, footer=f"report: {run.report}\nplot:   {run.out / 'cost_quality.png'}")


def tune(
    data: Data,
    router: Annotated[str, typer.Option("--router", "-r", help="Router to tune (its declared search_space).")],
    trials: Annotated[int, typer.Option(help="Total finished trials the study should hold "
                                        "(a resumed study runs only the missing ones).")] = 20,
    objective: Annotated[str, typer.Option(help="aiq | quality@budget | cost@quality "
                                           "(measured on the validation split).")] = "aiq",
    budget: Annotated[Optional[float], typer.Option(help="USD per query, for quality@budget.")] = None,
    target: Annotated[Optional[float], typer.Option(help="Mean quality, for cost@quality.")] = None,
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage, e.g. sqlite:///tune.db "
                                                   "(default: sqlite:///OUT/optuna.db, resumable).")] = None,
    study: Annotated[Optional[str], typer.Option(help="Study name (default: routecast-ROUTER-OBJECTIVE).")] = None,
    encoder: Encoder = DEFAULT_ENCODER,
    split: dict = SPLIT,
    timeout: Annotated[Optional[float], typer.Option(help="Stop starting trials after S seconds.")] = None,
    param: Params = None,
    out: Out = None,
    files: dict = DATA_FILES,
    estimation: dict = ESTIMATION,
    tracking: dict = TRACKING,
    distribution: dict = DISTRIBUTION,
) -> None:
    """Tune a router's hyperparameters with optuna on the validation split.

    --param fixes some hyperparameters. Writes OUT/best_config.json (default OUT: runs/tune-ROUTER)
    for `routecast train --config`, and OUT/tune.json.
    """
    from routecast.training.runs import tune_to_folder
    from routecast.training.tables import tune_footer, tune_table

    result, config_path = tune_to_folder(data, router, out=out, trials=trials, objective=objective, budget=budget,
                                         target=target, storage=storage, study=study, encoder=encoder, **split,
                                         timeout=timeout, params=parse_params(param), **tracking,
                                         **files, **estimation, distribution=distribution)
    print_table(**tune_table(result))
    typer.echo("\n".join(tune_footer(result, config_path)))


def calibrate(
    run_dir: Annotated[Path, typer.Argument(help="A `routecast train --out` folder (with run.json and router/).")],
    budget: Annotated[Optional[float], typer.Option(help="USD per query on average.")] = None,
    strong_share: Annotated[Optional[float], typer.Option(help="Share of calls to the strong "
                                                          "(best-quality) model.")] = None,
    target_quality: Annotated[Optional[float], typer.Option(help="Mean quality to reach at the lowest cost.")] = None,
    match_model: Annotated[Optional[str], typer.Option(help="Reach this model's validation quality at the "
                                                       "lowest cost.")] = None,
    conservative: Annotated[bool, typer.Option(help="Meet --budget by the upper end of a 95% bootstrap interval "
                                               "of the validation spend (not its mean), so it also holds "
                                               "on unseen prompts.")] = False,
    tracking: dict = TRACKING,
) -> None:
    """Calibrate a trained router's operating point on its validation split; check it on test.

    --budget, --strong-share, --target-quality or --match-model maps to a measured lam, saved in the
    checkpoint (and RUN_DIR/calibration.json). The output says whether a budget was met by the mean
    validation spend or, with --conservative, by its upper end.
    """
    from routecast.training.runs import calibrate_tracked
    from routecast.training.tables import calibration_footer, calibration_table

    result = calibrate_tracked(run_dir, budget=budget, strong_share=strong_share, target_quality=target_quality,
                               match_model=match_model, conservative=conservative, **tracking)
    print_table(**calibration_table(result, run_dir))
    typer.echo(calibration_footer(result, run_dir))


def encoder_train(
    data: Data,
    out: Out,
    encoder: Annotated[str, typer.Option("--encoder", help="Static encoder to start from: static, static:dim=N "
                                         "or static:/folder.")] = "static",
    dim: Annotated[Optional[int], typer.Option(help="Output dimension (default: the base encoder's).")] = None,
    head: Annotated[str, typer.Option(help="Quality head trained with the table: linear, mlp or joint (both "
                                      "losses summed; dropped after training).")] = "linear",
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping on a share of the train split).")] = 30,
    param: Params = None,
    split: dict = SPLIT,
    files: dict = DATA_FILES,
    estimation: dict = ESTIMATION,
    distribution: dict = DISTRIBUTION,
) -> None:
    """Fine-tune a static encoder's token table on the train split's outcomes (masked quality loss).

    The split is the one `routecast train` makes with the same --val/--test/--seed/--use-logged-split/
    --limit; only its train prompts are read. OUT is an ordinary static encoder folder: train routers
    on it with `routecast train --encoder static:OUT` (their checkpoints ship the table). -p sets
    lr, table_lr, batch_size, patience, hidden_dim, dropout, weight_decay, val_fraction, loss.
    """
    from routecast.router.pipeline import train_static_to_folder

    params = {**parse_params(param), "base": encoder, "dim": dim, "head": head, "max_epochs": epochs}
    trainer, prepared, folder = train_static_to_folder(data, out, params=params, **split, **files, **estimation,
                                                       distribution=distribution)
    if folder is None:  # a DDP rank above 0: trained its shard, writes and prints nothing
        return
    typer.echo(f"trained static encoder on the {trainer.n_train_} + {trainer.n_val_} (early stopping) train-split "
               f"prompts of {data}: {trainer.epochs_} epochs, masked {trainer.loss} loss on the held-out share "
               f"{trainer.initial_val_loss_:.4f} -> {trainer.best_val_loss_:.4f} (best epoch {trainer.best_epoch_})")
    typer.echo(f"encoder folder: {folder}")
    typer.echo(f"use it: routecast train --data {data} --encoder static:{folder} --router knn  "
               "(with the same --val/--test/--seed/--use-logged-split/--limit)")


#: command name -> function; registered by routecast/cli.py
def rollout_status(
    decision_log: Annotated[Path, typer.Argument(metavar="DECISION_LOG", help="The server's decision log.")],
    n_boot: Annotated[int, typer.Option(help="Bootstrap draws of the intervals.")] = 1000,
) -> None:
    """Compare the live and canary arms of a canary rollout (serve --canary) on their scored requests:
    quality, cost and quality per dollar with 95% intervals, and canary minus live."""
    from routecast.evaluation.rollout import arm_comparison, arm_markdown

    typer.echo(arm_markdown(arm_comparison(decision_log, n_boot=n_boot)))


from routecast.training.collect_commands import collect  # noqa: E402 - typer-only module

COMMANDS = {"evaluate": evaluate, "train": train, "routers": routers, "demo": demo, "tune": tune,
            "calibrate": calibrate, "encoder train": encoder_train, "rollout status": rollout_status,
            "collect": collect}
GROUPS = {"encoder": "Encoders trained from outcome logs (the routing-trained static encoder).",
          "rollout": "Canary rollouts of a served checkpoint (serve --canary)."}
