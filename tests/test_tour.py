"""The README's five-minute tour, run in the order a newcomer follows it: every command
succeeds, and the tables and the report show the newest runs (after a smoke run and a
default-profile run of one suite, runs of two evaluation protocols sit in one store). The
default profile is cut to a few steps here (same evaluation protocol, so the same question)."""

import re
import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from harness.cli import app

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def tour() -> list[list[str]]:
    """The harness commands of the tour's code block, in order."""
    block = README.split("## A five-minute tour", 1)[1].split("```bash\n", 1)[1].split("```")[0]
    commands = [shlex.split(line.split("#", 1)[0]) for line in block.splitlines()]
    return [words[3:] for words in commands if words[:3] == ["uv", "run", "harness"]]


def test_the_tour_runs_in_order_and_ends_in_a_table_and_a_report(tmp_path):
    suite = yaml.safe_load((ROOT / "suites" / "toy_modes.yaml").read_text())
    suite["train"].update(steps=6, log_every=3)  # the default profile, shortened
    suite["eval"]["every"] = 3
    suite["architecture"]["width"] = 16
    copy = tmp_path / "toy_modes.yaml"
    copy.write_text(yaml.safe_dump(suite, sort_keys=False))
    store = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    outputs = []
    for words in tour():
        words = [str(copy) if w == "suites/toy_modes.yaml" else w for w in words]
        if words[0] in ("run", "table", "report"):
            words += store
        if words[0] == "report":
            words[words.index("--out") + 1] = str(tmp_path / "report")
        result = CliRunner().invoke(app, words)
        assert result.exit_code == 0, f"harness {' '.join(words)}: {result.output}"
        outputs.append((words[0], result.stdout))
    tables = [out for command, out in outputs if command == "table"]
    assert len(tables) == 2
    assert "protocol gauss-3sigma-v1:n500" in tables[0] and "other" not in tables[0]
    newest = tables[1]
    assert "protocol gauss-3sigma-v1:n2500" in newest
    assert re.search(r"other evaluation protocols: gauss-3sigma-v1:n500 \(\d+ runs\)", newest)
    assert (tmp_path / "report" / "report.html").exists()
