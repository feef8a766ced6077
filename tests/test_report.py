import base64
import csv
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from conftest import TOY_SUITE
from PIL import Image
from typer.testing import CliRunner

from harness.analysis import figures, tables
from harness.cli import app
from harness.run.loading import load_suite
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store
from harness.run.store import Store as Tracker

NAN_LOSS = '''
import harness
import torch
from harness.builtins.losses import Wasserstein


class Exploding(Wasserstein):
    """Returns NaN: the run is recorded as diverged."""

    def critic_loss(self, real_out, fake_out):
        return super().critic_loss(real_out, fake_out) * torch.tensor(float("nan"))


@harness.hookimpl
def register_losses(register):
    register("exploding_for_report", Exploding)
'''
FIGURES = ("curves", "coverage", "gradient_norms", "samples")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real store from a tiny toy suite: two strategies × two seeds finished, one diverged,
    with coverage, transport and Lipschitz metrics and sample grids (seconds on a CPU)."""
    tmp = tmp_path_factory.mktemp("report-store")
    (tmp / "nan_loss_for_report.py").write_text(NAN_LOSS)
    text = TOY_SUITE.replace(
        "metrics: [mode_coverage]", "metrics: [mode_coverage, transport, lipschitz]"
    ).replace(
        "bce: {loss: bce, constraint: none}",
        "bce: {loss: bce, constraint: none}\n  boom: {loss: exploding_for_report}",
    )
    (tmp / "suite.yaml").write_text(text + "plugins: [nan_loss_for_report]\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(tmp))
        suite, registry = load_suite(tmp / "suite.yaml")
        tracker = Tracker(f"sqlite:///{tmp / 'mlflow.db'}")
        outcomes = run_suite(suite, registry, tracker, RunSettings(device="cpu"))
    assert sorted(o.status for o in outcomes) == ["diverged"] * 2 + ["finished"] * 4
    return tracker.uri, tmp / "suite.yaml"


class Page(HTMLParser):
    """The page's images, table cells and any reference to something outside it."""

    def __init__(self):
        super().__init__()
        self.images, self.cells, self.external, self.tables = [], [], [], 0
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tables += tag == "table"
        if tag == "img":
            self.images.append(attrs["src"])
        for name in ("src", "href"):
            if name in attrs and not attrs[name].startswith(("data:", "#")):
                self.external.append(attrs[name])
        if tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cells.append(self._cell.strip())
            self._cell = None


@pytest.fixture(scope="module")
def written(store, tmp_path_factory):
    uri, suite = store
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(
        app, ["report", str(suite), "--out", str(out), "--tracking-uri", uri]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.html'}" in result.stdout
    return out


def test_report_files_tables_and_embedded_figures(written):
    page = Page()
    page.feed((written / "report.html").read_text())
    assert not page.external  # self-contained: no file, URL, script or stylesheet outside it
    assert "<script" not in (written / "report.html").read_text()
    # the comparison table (made by harness.tables) and the run counts by status
    assert page.tables == 2
    assert {"strategy", "n", "bad", "modes_covered", "w1_exact", "rank"} <= set(page.cells)
    assert "mean ± 95 % CI over seeds" in (written / "report.html").read_text()
    counts = page.cells[page.cells.index("finished") - 1 :]
    assert counts[:4] == ["strategy", "finished", "diverged", "total"]
    assert counts[4:8] == ["wgan-gp", "2", "0", "2"] and counts[12:16] == ["boom", "0", "2", "2"]
    # every figure embedded as a PNG, the same bytes as the file beside the page
    assert len(page.images) == len(FIGURES)
    for name, src in zip(FIGURES, page.images, strict=True):
        png = base64.b64decode(src.removeprefix("data:image/png;base64,"))
        assert png == (written / f"{name}.png").read_bytes()
        image = Image.open(io.BytesIO(png))
        assert image.width > 300 and image.height > 150
        assert sum(map(bool, image.convert("L").histogram())) > 10  # something is drawn
    # tables as markdown and CSV
    markdown = (written / "table.md").read_text()
    assert "| wgan-gp | 2 | 0 |" in markdown and "| boom | 0 | 2 |" in markdown
    assert "mean ± 95 % CI over seeds" in markdown and "| boom | 0 | 2 | 2 |" in markdown
    assert next(r for r in markdown.splitlines() if r.startswith("| boom")).endswith("| – |")
    rows = list(csv.DictReader(line for line in (written / "table.csv").open() if line[0] != "#"))
    assert [r["strategy"] for r in rows] == ["wgan-gp", "bce", "boom"]
    assert float(rows[0]["modes_covered_mean"]) >= 0 and rows[2]["bad"] == "2"
    runs = list(csv.DictReader((written / "runs.csv").open()))
    assert len(runs) == 6 and {r["status"] for r in runs} == {"finished", "diverged"}


def test_no_usable_run_gives_no_figure_and_no_crash(store):
    uri, _ = store
    frame = tables.load_runs(uri, "tiny")
    boom = frame[frame["strategy"] == "boom"]  # diverged before any evaluation
    usable, colors = boom[boom["status"].isin(tables.OK)], figures.strategy_colors(boom)
    client = Store.reader(uri)
    assert (
        figures.curves_figure(figures.metric_histories(client, usable, figures.CURVES), colors)
        is None
    )
    assert figures.coverage_figure(usable, colors) is None
    assert figures.gradient_figure(usable, colors) is None
    assert figures.samples_figure(client, boom, colors) is None


def test_each_strategy_shows_its_own_run_samples(store, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, _ = store
    client = MlflowClient(uri)
    found = figures.last_samples(Store.reader(uri), tables.load_runs(uri, "tiny"), tmp_path)
    assert [run["strategy"] for run, _, _ in found] == ["wgan-gp", "bce"]
    for run, step, path in found:  # every run logs samples/step_0000006.png: no overwrites
        original = client.download_artifacts(run["run_id"], f"samples/step_{step:07d}.png")
        assert path.read_bytes() == Path(original).read_bytes()
    assert found[0][2].read_bytes() != found[1][2].read_bytes()


def test_html_table_escapes_strategy_names():
    table = pd.DataFrame(
        {"n": [1], "bad": [0], "x_mean": [1.0], "x_ci95": [float("nan")]},
        index=pd.Index(["<i>gp</i>"], name="strategy"),
    )
    assert "<td>&lt;i&gt;gp&lt;/i&gt;</td>" in tables.render(table, ["x"], {}, "html", "")


def test_report_errors_are_one_line_exit_2(store, tmp_path):
    uri, _ = store
    for args, message in [
        (["--experiment", "nope"], "no experiment 'nope'"),
        (["--experiment", "tiny", "--runs", "0" * 32], "has no runs under parent run"),
        ([], "give a suite file or --experiment NAME"),
    ]:
        out = tmp_path / "out"
        result = CliRunner().invoke(
            app, ["report", *args, "--out", str(out), "--tracking-uri", uri]
        )
        assert result.exit_code == 2, args
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOADED = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const ok = images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0);
  document.body.setAttribute("data-images", ok ? "loaded:" + images.length : "broken");
  document.body.setAttribute("data-tables", String(document.querySelectorAll("table tr").length));
});
</script>"""


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium absent (required in CI)"
)
def test_report_renders_in_headless_chromium(written, tmp_path):
    assert CHROMIUM, "CI needs chromium: .ci/run installs Debian's package"
    probe = tmp_path / "probe.html"  # the page plus a script that checks its images loaded
    probe.write_text((written / "report.html").read_text().replace("</body>", LOADED + "</body>"))
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,2000",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
    )
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    assert f'data-images="loaded:{len(FIGURES)}"' in body.group(0)
    assert int(re.search(r'data-tables="(\d+)"', body.group(0)).group(1)) == 2 * (1 + 3)

    shot = tmp_path / "page.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", (written / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2000)
    histogram = image.histogram()
    assert max(histogram) < 0.97 * sum(histogram)  # not blank: text, tables and figures


def test_the_page_shows_the_tracking_store_relative_to_the_working_directory(tmp_path):
    from harness.analysis.report import shown_uri

    inside = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    assert shown_uri(inside, base=tmp_path) == "sqlite:///results/mlflow.db"
    elsewhere = "sqlite:////srv/stores/mlflow.db"
    assert shown_uri(elsewhere, base=tmp_path) == elsewhere  # not under it: as given
    assert shown_uri(str(tmp_path / "mlruns"), base=tmp_path) == "mlruns"
    for uri in ("http://tracking:5000", "sqlite:///results/mlflow.db", "databricks"):
        assert shown_uri(uri, base=tmp_path) == uri
