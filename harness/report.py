"""A self-contained HTML report of a suite's runs, from MLflow: the comparison table (made by
:mod:`harness.tables`), run counts by status, metric curves over steps with seed bands, mode
coverage and critic gradient-norm bars per strategy, and the last sample grid per strategy.

Every figure is also written as a PNG beside the page, and the table as markdown and CSV, so
that a report directory can be committed as reference results. The page itself needs nothing
else: images are embedded as data URIs, the style is inline, there is no script.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from harness import tables

CURVES = (  # metrics plotted over steps, when present (a few: one history call per run each)
    "fid_mnist",
    "modes_covered",
    "kl_to_uniform",
    "reverse_kl",
    "hq_fraction",
    "w1_exact",
    "loss_critic",
    "grad_norm_generator",
)
COVERAGE = ("modes_covered", "hq_fraction", "reverse_kl", "kl_to_uniform")
GRAD_SETS = ("interp", "real", "fake")  # grad_norm_<set>_{mean,p95,max,frac_above_1}
GRAD_STATS = ("mean", "p95", "max")


@dataclass
class Figure:
    name: str  # file stem in the report directory
    title: str
    caption: str
    png: bytes


def write_report(
    uri: str,
    experiment: str,
    out: Path,
    parent: str | None = None,
    all_versions: bool = False,
    protocol: str | None = None,
) -> Path:
    """Write ``report.html`` with its figures (PNG), ``table.md``, ``table.csv`` and
    ``runs.csv`` (one row per run, final metrics) into ``out``; returns the page's path. Only
    runs of the code installed now, unless ``all_versions`` (see :mod:`harness.identity`)."""
    from mlflow.tracking import MlflowClient

    from harness.identity import current_checker
    from harness.registry import Registry
    from harness.summary import directions
    from harness.surface import surface_figure

    current = None if all_versions else current_checker()
    frame = tables.load_runs(uri, experiment, parent, current, protocol)  # HarnessError
    known = directions(Registry())
    metrics = tables.default_metrics(frame, known)
    table = tables.aggregate(frame, metrics, known)
    note = tables.footnote(frame, metrics)
    counts = status_counts(frame)
    colors = strategy_colors(frame)
    client = MlflowClient(uri)
    usable = frame[frame["status"].isin(tables.OK)]

    out.mkdir(parents=True, exist_ok=True)
    figures = [
        curves_figure(metric_histories(client, usable, CURVES), colors),
        coverage_figure(usable, colors),
        gradient_figure(usable, colors),
        samples_figure(client, frame, colors),
        surface_figure(client, frame, colors),
    ]
    if frame["setting"].ne("").any():  # a sweep: each metric over settings, budget curves
        from harness import robustness

        figures += [
            robustness.settings_figure(frame, metrics, colors),
            robustness.budget_figure(frame, metrics, known, colors),
        ]
        robustness.write_markdown(frame, metrics, known, out / "robustness.md")
    figures = [f for f in figures if f is not None]
    for figure in figures:
        (out / f"{figure.name}.png").write_bytes(figure.png)
    markdown = tables.render(table, metrics, known, "markdown", note)
    (out / "table.md").write_text(
        f"# {experiment}\n\n{markdown}\n## Runs by status\n\n{_markdown(counts)}"
    )
    (out / "table.csv").write_text(tables.render(table, metrics, known, "csv", note))
    frame.to_csv(out / "runs.csv", index=False)
    page = out / "report.html"
    page.write_text(
        render_page(
            experiment=experiment,
            uri=uri,
            parent=parent,
            frame=frame,
            table_html=tables.render(table, metrics, known, "html", note),
            counts=counts,
            figures=figures,
        )
    )
    return page


# --- data -------------------------------------------------------------------------------


def status_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs per strategy and status (finished, diverged, failed, running, ...), with a total."""
    order = list(dict.fromkeys(frame["strategy"]))
    counts = pd.crosstab(frame["strategy"], frame["status"]).reindex(order, fill_value=0)
    first = [s for s in ("finished", "skipped", "diverged", "failed") if s in counts]
    counts = counts[first + sorted(set(counts) - set(first))]
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    return counts


def strategy_colors(frame: pd.DataFrame) -> dict[str, tuple]:
    """One colour per strategy, the same in every figure."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(dict.fromkeys(frame["strategy"]))}


def metric_histories(client, runs: pd.DataFrame, metrics) -> pd.DataFrame:
    """Long frame (strategy, seed, metric, step, value): one ``get_metric_history`` call per
    run and metric it has among ``metrics``, never for every metric a run logged."""
    rows = []
    for run in runs.to_dict("records"):
        for metric in [m for m in metrics if pd.notna(run.get(m))]:
            for point in client.get_metric_history(run["run_id"], metric):
                rows.append((run["strategy"], run["seed"], metric, point.step, point.value))
    return pd.DataFrame(rows, columns=["strategy", "seed", "metric", "step", "value"])


# --- figures ----------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buffer.getvalue()


def _grid(n: int, width: float = 4.2, height: float = 3.0, cols: int = 3):
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = _plt().subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _legend(fig, colors: dict, strategies) -> None:
    handles = [_plt().Line2D([], [], color=colors[s], lw=6, label=s) for s in strategies]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6))


def _spread(values) -> bool:
    """Whether positive values span orders of magnitude (then they are drawn on a log scale)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > 100


def _present(frame: pd.DataFrame, metric: str) -> bool:
    return metric in frame and frame[metric].notna().any()


def _style(ax, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)


def curves_figure(histories: pd.DataFrame, colors: dict) -> Figure | None:
    """A panel per metric: per strategy the mean over seeds against step, min–max band."""
    if histories.empty:
        return None
    metrics = [m for m in CURVES if m in set(histories["metric"])]
    fig, axes = _grid(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        data = histories[histories["metric"] == metric]
        for strategy, group in data.groupby("strategy", sort=False):
            # a value logged twice at one step (a resumed window) counts once: the last
            by_seed = group.pivot_table(
                index="step", columns="seed", values="value", aggfunc="last"
            )
            steps, color = by_seed.index.to_numpy(), colors[strategy]
            marker = "." if len(steps) < 30 else None
            ax.plot(steps, by_seed.mean(axis=1), color=color, lw=1.5, marker=marker)
            if by_seed.shape[1] > 1:
                low, high = by_seed.min(axis=1), by_seed.max(axis=1)
                ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0)
        if _spread(data["value"]):
            ax.set_yscale("log")
        _style(ax, metric)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("step", fontsize=8)
    _legend(fig, colors, list(dict.fromkeys(histories["strategy"])))
    return Figure(
        "curves",
        "Metrics over training steps",
        "Line: mean over usable seeds; band: min–max over seeds. Evaluation metrics exist at "
        "evaluation steps only.",
        _png(fig),
    )


def _bars(ax, usable: pd.DataFrame, metrics: list[str], colors: dict) -> np.ndarray:
    """Grouped bars: a group per metric, a bar per strategy (mean over seeds), min–max
    whiskers and a dot per seed. Returns the bars' x positions, groups × strategies."""
    strategies = [s for s in colors if s in set(usable["strategy"])]
    width = 0.8 / len(strategies)
    x = (
        np.arange(len(metrics))[:, None]
        + (np.arange(len(strategies)) - (len(strategies) - 1) / 2) * width
    )
    for j, strategy in enumerate(strategies):
        values = usable.loc[usable["strategy"] == strategy, metrics]
        mean, low, high = values.mean(), values.min(), values.max()
        yerr = np.vstack([mean - low, high - mean])
        ax.bar(x[:, j], mean, width, yerr=yerr, capsize=2, color=colors[strategy])
        for xi, metric in zip(x[:, j], metrics, strict=True):
            seeds = values[metric].dropna()
            ax.scatter(np.full(len(seeds), xi), seeds, s=8, color="k", zorder=3)
    return x


def coverage_figure(usable: pd.DataFrame, colors: dict) -> Figure | None:
    """Final mode coverage (and quality share, KL) per strategy, over seeds."""
    metrics = [m for m in COVERAGE if _present(usable, m)]
    if not metrics:
        return None
    fig, axes = _grid(len(metrics), width=3.4, height=3.0, cols=4)
    for ax, metric in zip(axes, metrics, strict=True):
        x = _bars(ax, usable, [metric], colors)
        ax.set_xticks(
            x[0], [s for s in colors if s in set(usable["strategy"])], rotation=30, ha="right"
        )
        _style(ax, metric)
    return Figure(
        "coverage",
        "Mode coverage at the end of training",
        "Bar: mean over usable seeds; whiskers: min–max over seeds; dots: seeds.",
        _png(fig),
    )


def gradient_figure(usable: pd.DataFrame, colors: dict) -> Figure | None:
    """Critic gradient norms at the last evaluation: mean / p95 / max per strategy for
    interpolates, real and generated samples, and the share of norms above 1."""
    sets = [g for g in GRAD_SETS if all(_present(usable, f"grad_norm_{g}_{s}") for s in GRAD_STATS)]
    if not sets:
        return None
    fig, axes = _grid(len(sets) + 1, width=3.6, height=3.0, cols=4)
    for ax, name in zip(axes, sets, strict=False):
        metrics = [f"grad_norm_{name}_{s}" for s in GRAD_STATS]
        x = _bars(ax, usable, metrics, colors)
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        if _spread(usable[metrics].to_numpy().ravel()):
            ax.set_yscale("log")
        ax.set_xticks(x.mean(axis=1), GRAD_STATS)
        _style(ax, f"‖∇f‖ on {name} samples")
    shares = [
        f"grad_norm_{g}_frac_above_1" for g in sets if f"grad_norm_{g}_frac_above_1" in usable
    ]
    if shares:
        x = _bars(axes[-1], usable, shares, colors)
        axes[-1].set_xticks(x.mean(axis=1), [m.split("_")[2] for m in shares])
        axes[-1].set_ylim(0, 1.05)
    _style(axes[-1], "share of ‖∇f‖ > 1")
    _legend(fig, colors, [s for s in colors if s in set(usable["strategy"])])
    return Figure(
        "gradient_norms",
        "Critic gradient norms at the last evaluation",
        "Norm of the critic's input gradient on interpolates (where the gradient penalty acts), "
        "real and generated samples: mean, 95th percentile and max over the evaluation batch; "
        "the dashed line is the 1-Lipschitz target. Bar: mean over usable seeds; whiskers: "
        "min–max over seeds; dots: seeds.",
        _png(fig),
    )


def last_samples(client, frame: pd.DataFrame, dest: Path) -> list[tuple[pd.Series, int, Path]]:
    """Per strategy, the last ``samples/`` PNG of one run (usable runs first, lowest seed),
    downloaded into ``dest``: (run row, step, file)."""
    from mlflow.exceptions import MlflowException

    found = []
    ranked = frame.assign(bad=~frame["status"].isin(tables.OK)).sort_values(["bad", "seed"])
    for _, group in ranked.groupby("strategy", sort=False):
        for _, run in group.iterrows():
            try:
                pngs = [f.path for f in client.list_artifacts(run["run_id"], "samples")]
                pngs = sorted(p for p in pngs if p.endswith(".png"))
                if not pngs:
                    continue
                with mock.patch.dict(os.environ, {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "0"}):
                    into = dest / run["run_id"]  # same file names across runs
                    into.mkdir()
                    local = client.download_artifacts(run["run_id"], pngs[-1], str(into))
            except (MlflowException, OSError):
                continue
            step = int("".join(c for c in Path(pngs[-1]).stem if c.isdigit()) or -1)
            found.append((run, step, Path(local)))
            break
    order = list(dict.fromkeys(frame["strategy"]))
    return sorted(found, key=lambda item: order.index(item[0]["strategy"]))


def samples_figure(client, frame: pd.DataFrame, colors: dict) -> Figure | None:
    """The sample grids side by side, one per strategy."""
    plt = _plt()
    with tempfile.TemporaryDirectory() as tmp:
        found = last_samples(client, frame, Path(tmp))
        if not found:
            return None
        fig, axes = _grid(len(found), width=3.6, height=3.9, cols=4)
        for ax, (run, step, path) in zip(axes, found, strict=True):
            ax.imshow(plt.imread(path))
            status = "" if run["status"] in tables.OK else f", {run['status']}"
            ax.set_title(
                f"{run['strategy']}\nseed {run['seed']}, step {step}{status}",
                fontsize=9,
                color=colors[run["strategy"]],
            )
            ax.axis("off")
    return Figure(
        "samples",
        "Samples at the last evaluation",
        "One run per strategy: the lowest usable seed (else a diverged, failed or unfinished "
        "run that logged samples, its status marked), as logged under the run's samples/.",
        _png(fig),
    )


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
    import harness

    e = html.escape
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = (
        f"tracking store <code>{e(shown_uri(uri))}</code> · {len(frame)} runs, "
        f"{frame['strategy'].nunique()} strategies, {frame['seed'].nunique()} seeds · "
        f"made by harness {e(harness.__version__)} on {now}"
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
