"""The CLI is wired one way and shares its options: one ``commands.py`` per area, the same flags
everywhere, ``--version``, shell completion, one-line errors, full numbers in pipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import routecast
from routecast.cli import AREAS, app
from routecast.cli_options import parse_params, print_table
from routecast.errors import ConfigError

PACKAGE = Path(routecast.__file__).parent


def _commands(group, prefix: str = ""):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer's own click: no click.Group to test against)
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


ALL = dict(_commands(typer.main.get_command(app)))


def test_every_command_lives_in_an_area_commands_module():
    expected = {"datasets", "data inspect", "evaluate", "train", "routers", "demo", "tune", "calibrate",
                "cascade", "route", "export", "serve"}
    assert expected <= set(ALL)
    import importlib

    tables = {area: importlib.import_module(f"routecast.{area}.commands").COMMANDS for area in AREAS}
    for name, command in ALL.items():
        fn = command.callback.__wrapped__  # run_cli keeps the original function
        area = fn.__module__.split(".")[1]
        # the area's commands.py lists it (its body may sit in a typer-only *_commands.py it imports)
        assert fn.__module__.startswith("routecast.") and fn.__module__.endswith("commands"), (name, fn.__module__)
        listed = tables[area].get(name)
        assert listed is not None and (listed.__module__, listed.__qualname__) == (fn.__module__, fn.__qualname__)
    leftovers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.glob("*/cli*.py"))
    assert leftovers == []


def test_shared_options_have_one_spelling():
    for name, command in ALL.items():
        for param in command.params:
            opts = set(param.opts) | set(getattr(param, "secondary_opts", []))
            assert "--set" not in opts, name
            for long, short in (("--data", "-d"), ("--out", "-o"), ("--param", "-p")):
                if long in opts:
                    assert short in opts, (name, long)
            if "--track" in opts or "--no-track" in opts:
                assert param.opts == ["--track"] and param.secondary_opts == ["--no-track"], name
    has = {name: {o for p in c.params for o in p.opts} for name, c in ALL.items()}
    for name in ("train", "tune"):
        assert {"--data", "--param", "--encoder", "--seed", "--track", "--tracking-uri"} <= has[name]
    assert {"--track", "--tracking-uri"} <= has["calibrate"] and "--out" in has["export"]


def test_version_option_and_shell_completion():
    runner = CliRunner()
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == routecast.__version__
    assert "version" not in ALL  # the subcommand is gone
    help_text = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text


def test_bad_param_value_is_one_line_before_any_work(tmp_path, monkeypatch):
    import routecast.router.pipeline as pipeline

    calls = []
    monkeypatch.setattr(pipeline, "prepare", lambda *a, **k: calls.append(a) or pytest.fail("data was loaded"))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "-d", "llmrouter_9models", "-r", "knn", "-p", "k=abc",
                                      "-o", str(out), "--no-track"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: router 'knn', hyperparameter 'k': expects an integer, "
                                                  "got 'abc'"]
    assert calls == [] and not out.exists()
    result = CliRunner().invoke(app, ["tune", "-d", "llmrouter_9models", "-r", "knn", "-p", "weighting=3",
                                      "-o", str(out), "--no-track"])
    assert result.exit_code == 2 and "hyperparameter 'weighting'" in result.stderr and not out.exists()


def test_parse_params_reads_json_values_and_refuses_a_missing_value():
    assert parse_params(["k=10", "weighting=similarity", "lr=1e-3", "flag=true", "dims=[1, 2]"]) == {
        "k": 10, "weighting": "similarity", "lr": 0.001, "flag": True, "dims": [1, 2]}
    assert parse_params(None) == {}
    with pytest.raises(ConfigError, match="KEY=VALUE, got 'k'"):
        parse_params(["k"])


def test_piped_tables_are_markdown_with_full_values():
    proc = subprocess.run([sys.executable, "-m", "routecast.cli", "datasets"], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "| routellm_strong_weak | 15,521 | 2 | Apache-2.0 |" in proc.stdout
    assert "…" not in proc.stdout
    result = CliRunner().invoke(app, ["data", "inspect", "llmrouter_9models"])
    assert result.exit_code == 0
    assert "| oracle quality | 0.7950 |" in result.stdout
    assert "| llama-3.1-nemotron-51b-instruct | " in result.stdout and "…" not in result.stdout


def test_print_table_keeps_long_values_and_marks_the_highlight(capsys):
    value = "0.6234567890123 " + "x" * 300
    print_table("t", ["name", "value"], [("a", value), ("b|c", "1")], right=["value"], highlight=1)
    text = capsys.readouterr().out
    assert value in text and "| **b\\|c** | **1** |" in text and "|---|---:|" in text


@pytest.mark.parametrize("args, message", [
    (["train", "-o", "x"], "error: Missing option '--data' / '-d'. (see: routecast train --help)"),
    (["train", "-d", "x", "-o", "x", "--seed", "abc"], "error: Invalid value for '--seed'"),
    (["no-such-command"], "error: No such command 'no-such-command'."),
])
def test_usage_errors_are_one_line_with_exit_code_2(args, message, capsys):
    from routecast.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_main_exits_0_on_success(capsys):
    from routecast.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == routecast.__version__


def test_shell_completion_script_and_completions(capsys, monkeypatch):
    from routecast.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--show-completion", "bash"])
    assert exit_info.value.code == 0 and "_routecast_completion()" in capsys.readouterr().out
    monkeypatch.setenv("_ROUTECAST_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "routecast cal")
    monkeypatch.setenv("COMP_CWORD", "1")
    with pytest.raises(SystemExit):
        main([])
    assert capsys.readouterr().out.split() == ["calibrate"]


def test_parse_cost_range():
    from routecast.training.runs import parse_cost_range

    assert parse_cost_range(None) is None
    assert parse_cost_range("0.00005, 0.0002") == (0.00005, 0.0002)
    for bad in ("0.1", "a,b", "0.2,0.1"):
        with pytest.raises(ConfigError, match="cost_range"):
            parse_cost_range(bad)


def test_evaluate_pins_the_cost_range_and_prints_full_numbers(tmp_path):
    import json

    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", "-d", "llmrouter_9models", "--routers", "linear,cheapest",
                                      "--encoder", "hashing:dim=64", "--limit", "300", "--n-boot", "20",
                                      "--cost-range", "0.00005,0.0002", "-o", str(out), "--no-track"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cost_range"] == [0.00005, 0.0002]
    linear = next(r for r in metrics["leaderboard"] if r["label"] == "linear")
    lo, hi = linear["aiq_ci"]
    assert f"| linear | a1 | {linear['aiq']:.4f} [{lo:.4f}, {hi:.4f}] |" in result.stdout
    assert "| cheapest | a2 | point |" in result.stdout  # a point: reported, not ranked
    assert "AIQ cost range [5e-05, 0.0002]" in result.stdout and "…" not in result.stdout


def _help_sources(command) -> list[str]:
    texts = [command.help or ""]
    texts += [getattr(param, "help", None) or "" for param in command.params]
    return texts


def test_every_help_string_renders_as_written():
    """Square brackets in help text ("{"model": [in, out]}", "[default: 8000]") were read as Rich
    markup and vanished; every bracketed text of every command's help must show in its --help."""
    import re

    runner = CliRunner()
    checked = 0
    for name, command in ALL.items():
        result = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, (name, result.output)
        shown = "".join(result.stdout.split())  # wrapping moves line breaks, never characters
        for text in _help_sources(command):
            for bracketed in re.findall(r"\[[^\[\]]*\]", text):
                assert "".join(bracketed.split()) in shown, (name, bracketed)
                checked += 1
    assert checked >= 5  # the price table's [in, out], serve's --port/--host defaults, ...
    serve = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "100"}).stdout
    assert "TCP port [default: 8000]." in " ".join(serve.split())
    train = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "100"}).stdout.split())
    assert '{"model": [in, out]}' in train


def test_option_groups_are_declared_once_and_passed_as_one_dict():
    """The split, data-file and tracking options are one declaration each (cli_options), expanded
    into every command that takes them, with the same flags, defaults and help."""
    from routecast.cli_options import DATA_FILES, SPLIT, TRACKING, run_cli

    seen = {}

    def command(name: str, split: dict = SPLIT, files: dict = DATA_FILES, tracking: dict = TRACKING) -> None:
        seen.update(name=name, split=split, files=files, tracking=tracking)

    tiny = typer.Typer()
    tiny.command()(run_cli(command))
    result = CliRunner().invoke(tiny, ["x", "--val", "0.3", "--limit", "50", "--map", "prompt=Q",
                                       "--no-track"])
    assert result.exit_code == 0, result.output
    assert seen == {"name": "x", "split": {"val": 0.3, "test": 0.2, "seed": 0, "use_logged_split": False,
                                           "limit": 50},
                    "files": {"columns": "prompt=Q", "prices": None, "duplicates": "mean"},
                    "tracking": {"track": False, "tracking_uri": None}}
    split_flags = {"--val", "--test", "--seed", "--use-logged-split", "--limit"}
    for name in ("evaluate", "train", "tune", "cascade", "encoder train"):
        params = {o: p for p in ALL[name].params for o in p.opts}
        assert split_flags <= set(params), name
        assert {"--map", "--price-table", "--duplicates"} <= set(params), name
        assert params["--val"].help == ALL["train"].params[[p.name for p in ALL["train"].params].index("val")].help
