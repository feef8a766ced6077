"""Every command's --help shows its option texts whole: rich reads ``[...]`` in a help text as
markup and drops it, which left "MLflow tracking URI ." in `harness run --help`."""

import re

import typer
from typer.testing import CliRunner

from harness.cli import app


def commands(group: typer.Typer, prefix: tuple[str, ...] = ()):
    for command in group.registered_commands:
        yield (*prefix, command.name or command.callback.__name__)
    for sub in group.registered_groups:
        yield from commands(sub.typer_instance, (*prefix, sub.name))


def test_no_help_text_loses_a_bracketed_part():
    seen = list(commands(app))
    assert {("run",), ("list",), ("data", "fetch")} <= set(seen)
    for words in seen:
        result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        stray = re.findall(r"\w \.(?:\s|$)", result.output)
        assert not stray, f"harness {' '.join(words)} --help: {stray}\n{result.output}"
    run_help = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "400"}).output
    assert "URI (default: $MLFLOW_TRACKING_URI, else results/mlflow.db)." in run_help


def test_usage_lines_name_arguments_as_click_does_without_braces():
    for words in commands(app):
        output = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "400"}).output
        usage = next(line for line in output.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage
    usage = {
        words: CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "400"}).output
        for words in [("run",), ("new-plugin",), ("score",)]
    }
    assert " run [OPTIONS] SUITE " in usage[("run",)]
    assert " new-plugin [OPTIONS] KIND NAME " in usage[("new-plugin",)]
    assert " score [OPTIONS] [SAMPLES] " in usage[("score",)]
