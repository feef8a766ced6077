"""A self-contained HTML report of a suite's runs: the comparison table (made by
:mod:`harness.analysis.tables`), run counts by status, and the figures of
:mod:`harness.analysis.figures` (curves, coverage, gradient norms, samples, value surfaces; for a
sweep, each metric over settings and the budget curves of :mod:`harness.analysis.robustness`).

Every figure is also written as a PNG beside the page, and the table as markdown and CSV, so
that a report directory can be committed as reference results. The page itself needs nothing
else: images are embedded as data URIs, the style is inline, there is no script.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.analysis import robustness, tables
from harness.analysis.figures import (
    CURVES,
    coverage_figure,
    curves_figure,
    gradient_figure,
    layers_figure,
    metric_histories,
    samples_figure,
    status_counts,
    strategy_colors,
    surface_figure,
)
from harness.analysis.plotting import Figure
from harness.analysis.tables import Source
from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.core.version import __version__
from harness.run.store import VERSION, Store


@dataclass
class Report:
    """What a report shows: the runs, their table and footnote, counts by status, figures."""

    source: Source
    frame: pd.DataFrame
    metrics: list[str]
    directions: dict[str, str]
    table: pd.DataFrame
    note: str
    counts: pd.DataFrame
    figures: list[Figure]
    curves: pd.DataFrame  # every metric logged at more than one step, per run
    invocations: pd.DataFrame  # the invocations that trained the runs: when, how long


def write_report(source: Source, out: Path) -> Path:
    """Write ``report.html`` with its figures (PNG), ``table.md``, ``table.csv`` and
    ``runs.csv`` (one row per run, final metrics) into ``out`` for the runs ``source`` names
    (by default only runs of the code installed now, see :mod:`harness.analysis.currency`);
    returns the page's path. An ``out`` that cannot be written is one :class:`HarnessError`."""
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out}: a file; give a directory for the report")
    frame = tables.load(source)
    known = Registry().directions()
    metrics = tables.default_metrics(frame, known)
    store = Store.reader(source.tracking_uri)
    report = Report(
        source,
        frame,
        metrics,
        known,
        tables.aggregate(frame, metrics, known),
        tables.footnote(frame, metrics),
        status_counts(frame),
        make_figures(store, frame, metrics, known),
        curves(store, frame),
        invocations(store, source.name, frame),
    )
    try:
        return write_files(report, out)
    except OSError as exc:
        raise HarnessError(f"--out {out}: {exc.strerror or exc}") from None


def write_files(report: Report, out: Path) -> Path:
    """The report's files in ``out``: the page, figures, tables and runs."""
    out.mkdir(parents=True, exist_ok=True)
    frame, metrics, known, note = report.frame, report.metrics, report.directions, report.note
    if frame["setting"].ne("").any():  # a sweep: every metric's robustness table too
        robustness.write_markdown(frame, metrics, known, out / "robustness.md")
    for figure in report.figures:
        (out / f"{figure.name}.png").write_bytes(figure.png)
    markdown = tables.render(report.table, metrics, known, "markdown", note)
    (out / "table.md").write_text(
        f"# {report.source.name}\n\n{markdown}\n## Runs by status\n\n{_markdown(report.counts)}"
    )
    (out / "table.csv").write_text(tables.render(report.table, metrics, known, "csv", note))
    frame.to_csv(out / "runs.csv", index=False)
    report.curves.to_csv(out / "curves.csv", index=False)
    report.invocations.to_csv(out / "invocations.csv", index=False)
    page = out / "report.html"
    page.write_text(
        render_page(
            experiment=report.source.name,
            uri=report.source.tracking_uri,
            parent=report.source.parent,
            frame=frame,
            table_html=tables.render(report.table, metrics, known, "html", note),
            counts=report.counts,
            figures=report.figures,
        )
    )
    return page


def curves(store: Store, frame: pd.DataFrame) -> pd.DataFrame:
    """Long frame (run_key, strategy, setting, seed, metric, step, value) of every metric a
    run logged at more than one step: its value at each evaluation or logging point."""
    rows = []
    metrics = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    for run in frame.to_dict("records"):
        for metric in [m for m in metrics if pd.notna(run.get(m))]:
            history = store.metric_history(run["run_id"], metric)
            if len(history) > 1:
                key = (run["run_key"], run["strategy"], run["setting"], run["seed"], metric)
                rows += [(*key, step, value) for step, value in history]
    columns = ["run_key", "strategy", "setting", "seed", "metric", "step", "value"]
    return pd.DataFrame(rows, columns=columns)


def invocations(store: Store, experiment: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The invocations (parent runs) whose sessions trained the runs shown: profile, harness
    version, git commit, start and end (UTC) and wall seconds, and how many of the runs shown
    each ran."""
    runs = frame["invocation"].value_counts()
    rows = [
        {
            "invocation": p.id,
            "profile": p.tags.get("profile", ""),
            "harness_version": p.tags.get(VERSION, ""),
            "git_commit": p.tags.get("git_commit", ""),
            "start": _utc(p.start_time),
            "end": _utc(p.end_time),
            "wall_seconds": (p.end_time - p.start_time) / 1000 if p.end_time else float("nan"),
            "state": p.state,
            "runs": int(runs.get(p.id, 0)),
        }
        for p in store.invocations(experiment)
        if p.id in runs.index
    ]
    columns = ["invocation", "profile", "harness_version", "git_commit", "start", "end"]
    return pd.DataFrame(rows, columns=[*columns, "wall_seconds", "state", "runs"])


def _utc(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def make_figures(
    store: Store, frame: pd.DataFrame, metrics: list[str], directions: dict[str, str]
) -> list[Figure]:
    """Every figure the runs have data for, in the page's order."""
    colors = strategy_colors(frame)
    usable = frame[frame["status"].isin(tables.OK)]
    figures = [
        curves_figure(metric_histories(store, usable, CURVES), colors),
        coverage_figure(usable, colors),
        gradient_figure(usable, colors),
        samples_figure(store, frame, colors),
        surface_figure(store, frame, colors),
        layers_figure(store, frame, colors),
    ]
    if frame["setting"].ne("").any():  # a sweep: each metric over settings, budget curves
        figures += [
            robustness.settings_figure(frame, metrics, colors),
            robustness.budget_figure(frame, metrics, directions, colors),
        ]
    return [f for f in figures if f is not None]


# --- page -------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; font: 13px/1.35 system-ui, sans-serif;
        font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; white-space: nowrap; }
th { white-space: normal; }
.wide { overflow-x: auto; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.note, figcaption, .meta { color: #555; font-size: 13px; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
"""


def _markdown(frame: pd.DataFrame) -> str:
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, (i, *row))) + " |" for i, row in frame.iterrows()]
    return "\n".join(lines) + "\n"


def _html_table(frame: pd.DataFrame) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in [frame.index.name or "", *frame.columns])
    body = "".join(
        f"<tr><td>{e(str(i))}</td>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>"
        for i, row in frame.iterrows()
    )
    return f"<table class='counts'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _breakable_headers(table_html: str) -> str:
    """Long metric names in header cells may wrap after an underscore, nowhere else."""
    return re.sub(
        r"<th>([^<]*)</th>", lambda m: f"<th>{m[1].replace('_', '_<wbr>')}</th>", table_html
    )


def _figure_html(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    e = html.escape
    return (
        f"<h2>{e(figure.title)}</h2>\n<figure id='{figure.name}'>"
        f"<img src='data:image/png;base64,{data}' alt='{e(figure.title)}'>"
        f"<figcaption>{e(figure.caption)} (also <code>{figure.name}.png</code>)</figcaption>"
        "</figure>\n"
    )


def shown_uri(uri: str, base: Path | None = None) -> str:
    """A tracking URI as a page shows it: a SQLite file or path under ``base`` (the working
    directory) relative to it, so a committed report names no machine's directories."""
    scheme = "sqlite:///" if uri.startswith("sqlite:///") else ""
    path = uri.removeprefix(scheme)
    if "://" in path or not os.path.isabs(path):
        return uri
    try:
        return scheme + Path(path).relative_to(base or Path.cwd()).as_posix()
    except ValueError:
        return uri


def render_page(*, experiment, uri, parent, frame, table_html, counts, figures) -> str:
    """The self-contained HTML page: no script, no network, figures as data URIs."""
    e = html.escape
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = (
        f"tracking store <code>{e(shown_uri(uri))}</code> · {len(frame)} runs, "
        f"{frame['strategy'].nunique()} strategies, {frame['seed'].nunique()} seeds · "
        f"made by harness {e(__version__)} on {now}"
    )
    if parent:
        meta += f" · runs of parent run <code>{e(parent)}</code> only"
    missing = "" if figures else "<p>No figures: no usable run logged metrics or samples.</p>"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(experiment)} — harness report</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{e(experiment)}</h1>\n<p class='meta'>{meta}</p>\n"
        f"<h2>Comparison</h2>\n<div class='wide'>{_breakable_headers(table_html)}</div>\n"
        "<h2>Runs by status</h2>\n<p class='note'>Diverged (NaN/inf losses) and failed (plugin "
        "raised) runs are left out of the means above and of the curves and bars below.</p>\n"
        f"{_html_table(counts)}\n"
        + "".join(_figure_html(f) for f in figures)
        + missing
        + "</body></html>\n"
    )
