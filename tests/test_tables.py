import io
import math
from xml.etree import ElementTree

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from harness.analysis import tables, verdicts
from harness.cli import app

DIRECTIONS = {"fid_mnist": "min", "modes_covered": "max"}
A_FID, B_FID = [10.0, 12.0, 14.0], [20.0, 20.0, 20.0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("synthetic")
    parent = client.create_run(exp, tags={"harness.kind": "suite"}).info.run_id

    def child(strategy, seed, status, metrics):
        tags = {"harness.kind": "run", "mlflow.parentRunId": parent, "strategy": strategy}
        tags |= {"seed": str(seed), "status": status, "run_key": f"{strategy}{seed}"}
        run = client.create_run(exp, tags=tags).info.run_id
        for key, value in {
            "dataset.name": "mnist",
            "train.steps": "600",
            "eval.samples": "2000",
            "harness_version": "0.1.0",
        }.items():
            client.log_param(run, key, value)
        for key, value in metrics.items():
            client.log_metric(run, key, value, step=600)

    for seed, (fa, fb) in enumerate(zip(A_FID, B_FID, strict=True)):
        lucky = {"lucky": [1.0, 1.0, 5.0][seed]}  # A − B > 0 on every seed, yet p ≈ 0.22
        child("a", seed, "finished", {"fid_mnist": fa, "modes_covered": 10, "same": 1.0} | lucky)
        b = {"fid_mnist": fb, "modes_covered": 9 + seed % 2, "same": 1.0, "lucky": 0.0}
        child("b", seed, "finished", b)
    child("b", 3, "diverged", {"fid_mnist": 999.0, "modes_covered": 1})
    return uri, parent


def test_aggregate_closed_forms(store):
    frame = tables.load_runs(store[0], "synthetic")
    table = tables.aggregate(frame, ["fid_mnist", "modes_covered"], DIRECTIONS)
    assert table.loc["a", "fid_mnist_mean"] == 12.0 and table.loc["a", "fid_mnist_std"] == 2.0
    assert table.loc["a", "fid_mnist_ci95"] == pytest.approx(4.302653 * 2 / math.sqrt(3), rel=1e-5)
    assert table.loc["b", "fid_mnist_mean"] == 20.0  # the diverged run's 999 is excluded
    assert table.loc["b", "n"] == 3 and table.loc["b", "bad"] == 1 and table.loc["a", "bad"] == 0
    assert table.loc["a", "rank"] == 1 and table.loc["b", "rank"] == 2
    assert tables.best(table, "fid_mnist", DIRECTIONS) == {"a"}
    assert tables.best(table, "modes_covered", DIRECTIONS) == {"a"}


def test_formats_round_trip(store):
    frame = tables.load_runs(store[0], "synthetic")
    metrics = ["fid_mnist", "modes_covered"]
    table = tables.aggregate(frame, metrics, DIRECTIONS)
    note = tables.footnote(frame, metrics)
    assert "MNIST evaluator CNN (not Inception)" in note and "steps 600" in note
    csv = pd.read_csv(
        io.StringIO(tables.render(table, metrics, DIRECTIONS, "csv", note)),
        comment="#",
        index_col=0,
    )
    assert csv.loc["a", "fid_mnist_mean"] == 12.0 and csv.loc["b", "bad"] == 1
    markdown = tables.render(table, metrics, DIRECTIONS, "markdown", note).splitlines()
    rows = [line for line in markdown if line.startswith("|")]
    assert len(rows) == 2 + 2 and len({r.count("|") for r in rows}) == 1
    assert "**12 ± 5**" in rows[2]
    latex = tables.render(table, metrics, DIRECTIONS, "latex", note)
    body = latex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert latex.startswith(r"\begin{tabular}{lrrrrr}") and r"\end{tabular}" in latex
    assert all(line.count("&") == 5 and line.endswith(r"\\") for line in body)
    assert r"fid\_mnist" in latex and r"\textbf{" in latex
    html = tables.render(table, metrics, DIRECTIONS, "html", note)
    tree = ElementTree.fromstring(html.splitlines()[0])  # well-formed: parses as XML
    rows = tree.findall("./tbody/tr")
    assert [r[0].text for r in rows] == ["a", "b"] and len(tree.findall("./thead/tr/th")) == 6
    assert rows[0][3].find("b").text == "12 ± 5"


def test_compare_verdicts(store):
    frame = tables.load_runs(store[0], "synthetic")
    known = DIRECTIONS | {"same": "min", "lucky": "max"}
    out = verdicts.compare(frame, "a", "b", ["fid_mnist", "same", "lucky"], known)
    assert out.loc["fid_mnist", "verdict"] == "separates: a better"
    assert out.loc["fid_mnist", "difference"] == -8.0 and out.loc["fid_mnist", "ci95_high"] < 0
    assert out.loc["same", "verdict"] == "no difference"
    # the bootstrap interval of [1, 1, 5] excludes 0, but three seeds are too few to tell
    assert out.loc["lucky", "ci95_low"] > 0 and out.loc["lucky", "p_value"] > 0.05
    assert out.loc["lucky", "verdict"] == "cannot separate"


def test_cli_table_and_errors(store):
    uri, parent = store
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "table",
            "--experiment",
            "synthetic",
            "--tracking-uri",
            uri,
            "--metrics",
            "fid_mnist",
            "--runs",
            parent,
            "--all-versions",  # synthetic runs carry no code identity: not current code
        ],
    )
    assert result.exit_code == 0 and "| a | 3 | 0 | **12 ± 5** | 1 |" in result.stdout
    for args, message in [
        (["--experiment", "nope"], "no experiment 'nope'"),
        (["--experiment", "synthetic", "--runs", "0" * 32], "has no runs under parent run"),
        (["--experiment", "synthetic", "--metrics", "fidd"], "no metric 'fidd'"),
        (["--experiment", "synthetic", "--compare", "a", "c"], "no strategy 'c'"),
        (["--experiment", "synthetic", "--format", "docx"], "unknown format 'docx'"),
    ]:
        result = runner.invoke(app, ["table", *args, "--tracking-uri", uri, "--all-versions"])
        assert result.exit_code == 2, args
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
