"""Progress of `harness run`: timestamped lines without a terminal (CI, nohup, a log file),
rich bars on one."""

import io

from conftest import TOY_SUITE
from rich.console import Console
from typer.testing import CliRunner

from harness import cli, console
from harness.run.loading import load_suite
from harness.run.runner import Outcome

ONE_SEED = TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0]")


def bar_lines(out: str) -> list[str]:
    """Lines of a rich progress bar: a run's name, then bar glyphs (tables draw ━ alone)."""
    return [line for line in out.splitlines() if "seed 0" in line and "━━" in line]


def run(path, store):
    return CliRunner().invoke(cli.app, ["run", str(path), "--tracking-uri", store])


def test_without_a_terminal_each_run_gets_start_step_and_end_lines(
    write_suite, tmp_path, monkeypatch
):
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # whatever the terminal running pytest is
    monkeypatch.setattr(console, "PROGRESS_SECONDS", 0.0)  # a line at every logging point
    path, store = write_suite(ONE_SEED), f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run(path, store)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for name in ("wgan-gp seed 0", "bce seed 0"):
        assert f"start {name}: 6 steps" in out
        assert f"{name}: step 3/6, critic " in out and f"{name}: step 6/6, critic " in out
        end = next(line for line in out.splitlines() if f"end {name}: finished in " in line)
        assert "modes_covered " in end and "sec_per_step " in end
    assert not bar_lines(out)

    again = run(path, store).stdout
    assert "skip bce seed 0: already finished" in again and "start bce" not in again


def test_step_lines_come_at_most_every_progress_seconds(write_suite, monkeypatch):
    suite, _ = load_suite(write_suite(ONE_SEED))
    spec = suite.runs[0]
    clock = iter([0.0, 10.0, 31.0, 40.0, 62.0, 70.0])
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    reporter = console.LineReporter(Console(file=out, width=200))
    update = reporter.run_started(spec)  # t = 0
    for step in (1, 2, 3, 4):  # t = 10, 31, 40, 62
        update(step, {"loss_critic": 0.5, "loss_generator": -0.25})
    reporter.run_ended(Outcome(spec, "failed", error="ValueError: boom"))  # t = 70
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "start wgan-gp seed 0: 6 steps",
        "wgan-gp seed 0: step 2/6, critic +0.500 gen -0.250, 31.0s",
        "wgan-gp seed 0: step 4/6, critic +0.500 gen -0.250, 1m02s",
        "end wgan-gp seed 0: failed in 1m10s; ValueError: boom",
    ]


def test_on_a_terminal_runs_get_rich_bars(write_suite, tmp_path, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich treats the output as a terminal
    result = run(write_suite(ONE_SEED), f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.exit_code == 0, result.output
    bars = bar_lines(result.stdout)
    assert any("bce seed 0" in line and "6/6" in line for line in bars)  # bar and M/N column
    assert "start bce seed 0" not in result.stdout
