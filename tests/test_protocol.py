"""Evaluation protocols in tables: runs measured under different protocols are never averaged
together: a table shows the newest runs' protocol unless --protocol picks another, and its
footnote names the protocol and the runs of others it leaves out."""

from conftest import TOY_SUITE
from typer.testing import CliRunner

from harness.cli import app
from harness.run.loading import load_suite
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store as Tracker

runner = CliRunner()


def test_table_shows_the_newest_protocol_names_the_others_and_selects_one(tmp_path, write_suite):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = Tracker(uri)
    for samples in (200, 150):  # the evaluation sample count is part of the protocol
        text = TOY_SUITE.replace("samples: 200", f"samples: {samples}")
        suite, registry = load_suite(write_suite(text, f"s{samples}.yaml"), seeds=[0])
        run_suite(suite, registry, tracker, RunSettings(device="cpu"))
    base = ["table", "--experiment", "tiny", "--tracking-uri", uri, "--metrics", "modes_covered"]

    mixed = runner.invoke(app, base)  # the newest runs' protocol, the other one named
    assert mixed.exit_code == 0, mixed.output
    assert "protocol gauss-3sigma-v1:n150" in mixed.output
    assert "other evaluation protocols: gauss-3sigma-v1:n200 (2 runs) (--protocol ID)" in (
        mixed.output
    )

    chosen = runner.invoke(app, [*base, "--protocol", "gauss-3sigma-v1:n200"])
    assert chosen.exit_code == 0, chosen.output
    assert "protocol gauss-3sigma-v1:n200" in chosen.output
    assert "protocols: gauss-3sigma-v1:n150 (2 runs)" in chosen.output

    unknown = runner.invoke(app, [*base, "--protocol", "mnist-eval"])
    assert unknown.exit_code == 2 and "matches no protocol" in unknown.output
    ambiguous = runner.invoke(app, [*base, "--protocol", "gauss"])
    assert ambiguous.exit_code == 2 and "more than one" in ambiguous.output
