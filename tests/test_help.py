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
