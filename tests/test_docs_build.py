"""Evidence as code: the numbers of README.md and results/*.md are generated from the results'
CSV files, and `harness docs check` fails on a hand-edited number or a changed runs.csv."""

from pathlib import Path

import pytest
from conftest import TOY_SUITE
from typer.testing import CliRunner

from harness.analysis import docs
from harness.analysis.report import write_report
from harness.analysis.tables import Source
from harness.cli import app
from harness.core.errors import HarnessError
from harness.run.loading import load_suite
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store

ROOT = Path(__file__).parents[1]
PAGE = """# Results

<!-- harness: table results/tiny metrics=modes_covered,hq_fraction -->
<!-- /harness -->

Per run:

<!-- harness: runs results/tiny metrics=modes_covered -->
<!-- /harness -->

<!-- harness: compare results/tiny wgan-gp bce metrics=modes_covered,reverse_kl -->
<!-- /harness -->

<!-- harness: verdict results/tiny wgan-gp bce metrics=modes_covered,reverse_kl -->
<!-- /harness -->

<!-- harness: curve results/tiny metrics=modes_covered,loss_critic -->
<!-- /harness -->

<!-- harness: made results/tiny -->
<!-- /harness -->
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    suite = root / "tiny.yaml"
    text = TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0, 1, 2]")
    suite.write_text(text.replace("log_every: 3", "log_every: 1"))  # evaluated every 3
    loaded, registry = load_suite(suite)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_suite(loaded, registry, Store(uri), RunSettings(device="cpu"))
    write_report(Source(experiment="tiny", uri=uri), root / "results" / "tiny")
    return root


def test_build_then_check_and_a_hand_edit_or_a_changed_csv_fails(project, monkeypatch):
    page = project / "results" / "README.md"
    page.write_text(PAGE)
    assert len(docs.build([page], project)) == 6
    built = page.read_text()
    assert "| wgan-gp (3 seeds) | modes_covered | " in built  # the curve, step by step
    assert "| strategy | metric | 3 | 6 |\n" in built  # the evaluation steps, not every log
    assert "`wgan-gp` against `bce` (" in built and "Holm-corrected, 3 runs a side): " in built
    assert "| wgan-gp | 3 | 0 |" in built and "- Runs: 6 (2 strategies; seeds 0, 1, 2)" in built
    assert docs.check([page], project) is None
    monkeypatch.chdir(project)
    assert CliRunner().invoke(app, ["docs", "check", str(page)]).exit_code == 0

    edited = built.replace("| wgan-gp | 3 | 0 |", "| wgan-gp | 4 | 0 |", 1)
    page.write_text(edited)
    stale = docs.check([page], project)
    assert stale is not None and stale.spec.startswith("table results/tiny")
    result = CliRunner().invoke(app, ["docs", "check", str(page)])
    assert result.exit_code == 1 and f"{page}:3: table results/tiny" in result.stderr

    page.write_text(built)
    runs = project / "results" / "tiny" / "runs.csv"
    original = runs.read_text()
    runs.write_text(original.replace(",finished,", ",diverged,", 1))
    try:
        assert docs.check([page], project) is not None
    finally:
        runs.write_text(original)


def test_the_repository_docs_match_their_data():
    stale = docs.check(docs.default_paths(ROOT), ROOT)
    assert stale is None, f"{stale}: run `uv run harness docs build` and commit the result"


def test_scores_render_the_rows_harness_score_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for n in (300, 600):
        result = CliRunner().invoke(
            app, ["score", "--real", str(n), "--dataset", "ring8", "--out", f"r{n}.csv"]
        )
        assert result.exit_code == 0, result.output
    text = docs.render("scores r300.csv r600.csv metrics=modes_covered,w1_exact", tmp_path)
    assert text.splitlines()[0] == "| samples | dataset | modes_covered | w1_exact |"
    assert text.splitlines()[2:] == [
        "| 300 real samples | ring8 | 8 | 0 |",
        "| 600 real samples | ring8 | 8 | 0 |",
    ]
    with pytest.raises(HarnessError, match="no column fid_mnist"):
        docs.render("scores r300.csv metrics=fid_mnist", tmp_path)
    with pytest.raises(HarnessError, match="missing.csv: missing"):
        docs.render("scores missing.csv", tmp_path)


def test_a_section_its_data_cannot_give_names_itself_and_writes_nothing(project):
    good = project / "results" / "A.md"
    bad = project / "results" / "B.md"
    good.write_text("<!-- harness: runs results/tiny metrics=modes_covered -->\n<!-- /harness -->")
    bad.write_text("x\n\n<!-- harness: verdict results/tiny gan bce -->\n<!-- /harness -->\n")
    before = good.read_text()
    with pytest.raises(HarnessError, match=r"B\.md:3: verdict results/tiny gan bce: .*'gan'"):
        docs.build([good, bad], project)
    assert good.read_text() == before  # nothing written
    with pytest.raises(HarnessError, match=r"B\.md:3: verdict"):
        docs.check([bad], project)
