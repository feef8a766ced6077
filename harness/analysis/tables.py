"""Comparison tables from stored runs: the runs as a frame (one row per strategy, setting and
seed), strategies × metrics aggregated over seeds with confidence intervals, best values, ranks,
a protocol footnote, and two-strategy comparisons."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness.analysis.currency import current_checker
from harness.analysis.summary import SHOWN
from harness.core.errors import HarnessError
from harness.run.store import (
    EXECUTION,
    IDENTITY,
    PROTOCOL,
    PROVENANCE,
    SWEEP,
    VERSION,
    Store,
    StoredRun,
    default_tracking_uri,
)
from harness.run.suite_file import experiment_name

OK = ("finished", "skipped")  # usable: in the means
BAD = ("diverged", "failed")  # counted, left out of the means
BOLD = {"markdown": "**{}**", "latex": "\\textbf{{{}}}", "html": "<b>{}</b>"}
UNRECORDED = "unrecorded"  # runs from before evaluation protocols were logged
PROTOCOL_PARAMS = {  # the params that say what the numbers mean: kept, and in the footnote
    PROTOCOL: "protocol",
    "dataset.name": "dataset",
    "dataset.params.source": "source",
    "train.steps": "steps",
    "train.batch_size": "batch",
    "eval.samples": "eval samples",
}


@dataclass(frozen=True)
class Source:
    """Which stored runs to read: a suite's experiment (or ``experiment`` by name), in the
    store at ``uri`` (default: ``$MLFLOW_TRACKING_URI``, else results/mlflow.db), only those
    of invocation ``parent``, of every code version or only the current one, of ``protocol``."""

    suite: Path | None = None
    experiment: str | None = None
    uri: str | None = None
    parent: str | None = None
    all_versions: bool = False
    protocol: str | None = None

    @property
    def name(self) -> str:
        """The experiment: ``experiment``, else the suite file's ``name:``."""
        return experiment_name(self.suite, self.experiment)

    @property
    def tracking_uri(self) -> str:
        return self.uri or default_tracking_uri()


def load(source: Source) -> pd.DataFrame:
    """The runs ``source`` names, as :func:`load_runs` gives them."""
    current = None if source.all_versions else current_checker()
    return load_runs(source.tracking_uri, source.name, source.parent, current, source.protocol)


def load_runs(
    uri: str,
    experiment: str,
    parent: str | None = None,
    current: Callable[[dict[str, str]], bool] | None = None,
    protocol: str | None = None,
) -> pd.DataFrame:
    """One row per (strategy, setting, seed): the latest child run, its id, status, params
    (a sweep's values as ``sweep.PATH``) and final metrics; ``harness score`` runs too, as
    strategy ``score:NAME``. Runs of one evaluation protocol only (:func:`select_protocol`);
    with ``current`` (:func:`harness.analysis.currency.current_checker`), only runs of the code
    installed now. ``frame.attrs``: ``protocol``, ``others`` (runs of other protocols, by
    protocol) and ``older`` (runs of this protocol made by older code)."""
    runs = Store.reader(uri).runs(experiment)
    if parent is not None:
        runs = [r for r in runs if parent in (r.parent, r.resumed_by)]
    if not runs:
        where = f" under parent run {parent}" if parent else ""
        raise HarnessError(f"experiment {experiment!r} has no runs{where}")
    fresh = [r for r in runs if current(r.params)] if current is not None else runs
    trained = [r for r in fresh or runs if r.kind == "run"]  # scores join trained runs' tables
    newest = (trained or fresh or runs)[-1]
    chosen, others = select_protocol(runs, protocol, experiment, newest)
    runs = [r for r in runs if r.params.get(PROTOCOL, UNRECORDED) == chosen]
    older = 0
    if current is not None:
        kept = [r for r in runs if current(r.params)]
        older, runs = len(runs) - len(kept), kept
        if older and not runs:
            raise HarnessError(
                f"experiment {experiment!r} has only runs of older code or harness versions "
                f"({older}): re-run the suite, or --all-versions to tabulate them"
            )
    rows = [
        {
            "strategy": r.strategy,
            "seed": int(r.seed),
            "setting": r.setting,
            "status": r.status,
            "run_id": r.id,
            "run_key": r.run_key,
            "invocation": r.resumed_by or r.parent,  # the parent run of its last session
            **{k: v for k, v in r.params.items() if kept_param(k)},
            **r.metrics,
        }
        for r in runs
    ]
    frame = pd.DataFrame(rows).drop_duplicates(["strategy", "setting", "seed"], keep="last")
    frame = frame.reset_index(drop=True)
    frame.attrs.update(older=older, protocol=chosen, others=others)
    return frame


def kept_param(param: str) -> bool:
    """The params a row of a table's frame keeps: what the numbers mean (protocol, dataset,
    budget), the harness version and each part's code identity, the machine (provenance) and a
    sweep's values."""
    return (
        param in PROTOCOL_PARAMS
        or param in PROVENANCE
        or param in (VERSION, EXECUTION)
        or param.startswith((SWEEP, IDENTITY))
    )


def select_protocol(
    runs: list[StoredRun], protocol: str | None, experiment: str, newest: StoredRun
) -> tuple[str, dict[str, int]]:
    """The evaluation protocol to show (the ``eval_protocol`` param, see
    :func:`harness.evaluation.evaluator.evaluation_protocol`) and the run counts of the others:
    ``protocol`` (an id or a unique prefix of one), else that of the ``newest`` run. Numbers of
    different protocols are not comparable, so a table shows one at a time."""
    found = Counter(r.params.get(PROTOCOL, UNRECORDED) for r in runs)
    if protocol is None:
        chosen = newest.params.get(PROTOCOL, UNRECORDED)
    else:
        matches = [p for p in found if p == protocol] or [
            p for p in found if p.startswith(protocol)
        ]
        if len(matches) != 1:
            which = "no" if not matches else "more than one"
            listed = ", ".join(f"{p} ({n} runs)" for p, n in found.most_common())
            raise HarnessError(
                f"--protocol {protocol!r} matches {which} protocol of experiment "
                f"{experiment!r}: {listed}"
            )
        chosen = matches[0]
    return chosen, {p: n for p, n in found.most_common() if p != chosen}


def aggregate(frame: pd.DataFrame, metrics: list[str], directions: dict[str, str]) -> pd.DataFrame:
    """Per strategy: runs ``n`` (usable), ``bad`` (diverged or failed), and for each metric
    its mean, std, 95 % CI half-width (t distribution); then ``rank`` (1 = best), the mean of
    the per-metric ranks over metrics with a direction."""
    order = list(dict.fromkeys(frame["strategy"]))
    usable = frame[frame["status"].isin(OK)]
    table = pd.DataFrame(index=pd.Index(order, name="strategy"))
    table["n"] = usable.groupby("strategy").size().reindex(order, fill_value=0)
    table["bad"] = (
        frame[frame["status"].isin(BAD)].groupby("strategy").size().reindex(order, fill_value=0)
    )
    ranks = []
    for metric in metrics:
        values = usable.groupby("strategy")[metric] if metric in usable else None
        if values is None:
            raise HarnessError(f"no metric {metric!r} in these runs")
        mean, std, n = (values.agg(f).reindex(order) for f in ("mean", "std", "count"))
        table[f"{metric}_mean"], table[f"{metric}_std"] = mean, std
        half = [
            stats.t.ppf(0.975, k - 1) * s / math.sqrt(k) if k > 1 else np.nan
            for s, k in zip(std, n, strict=True)
        ]
        table[f"{metric}_ci95"] = half
        if metric in directions:
            ranks.append(mean.rank(ascending=directions[metric] == "min"))
    if ranks:
        table["rank"] = pd.concat(ranks, axis=1).mean(axis=1).rank(method="min")
    return table


def best(table: pd.DataFrame, metric: str, directions: dict[str, str]) -> set[str]:
    """The strategies whose mean is best (ties included); none without a direction."""
    column = table[f"{metric}_mean"]
    if metric not in directions or column.isna().all():
        return set()
    target = column.min() if directions[metric] == "min" else column.max()
    return set(column[column == target].index)


def footnote(frame: pd.DataFrame, metrics: list[str]) -> str:
    """The protocol behind the numbers."""
    parts = []
    for param, label in PROTOCOL_PARAMS.items():
        if param in frame:
            parts.append(f"{label} {', '.join(sorted(map(str, frame[param].dropna().unique())))}")
    if any(m.endswith("_mnist") for m in metrics):
        parts.append("FID/KID/PR features: the harness's MNIST evaluator CNN (not Inception)")
    kinds = sorted({str(v).split(":")[0] for v in frame.get(EXECUTION, pd.Series()).dropna()})
    if "stacked" in kinds:
        parts.append(
            f"executed {' and '.join(kinds)}: a stacked run's time columns are its share of "
            "its group's time (--no-stack to compare costs)"
        )
    versions = sorted(map(str, frame.get("harness_version", pd.Series(["?"])).dropna().unique()))
    parts.append(f"harness {', '.join(versions)}")
    if frame.attrs.get("older"):
        parts.append(
            f"{frame.attrs['older']} runs of older code hidden (--all-versions includes them)"
        )
    if others := frame.attrs.get("others"):
        listed = ", ".join(f"{p} ({n} runs)" for p, n in others.items())
        parts.append(f"not shown, other evaluation protocols: {listed} (--protocol ID)")
    return "mean ± 95 % CI over seeds (n usable runs; bad = diverged or failed); " + "; ".join(
        parts
    )


def _cell(table, strategy, metric) -> str:
    mean, half = table.at[strategy, f"{metric}_mean"], table.at[strategy, f"{metric}_ci95"]
    if pd.isna(mean):
        return "–"
    return f"{mean:.4g}" + ("" if pd.isna(half) else f" ± {half:.2g}")


def render(
    table: pd.DataFrame, metrics: list[str], directions: dict[str, str], fmt: str, note: str
) -> str:
    """The table as markdown, csv (numeric columns, parseable back), latex or html."""
    if fmt == "csv":
        return table.to_csv() + f"# {note}\n"
    if fmt not in BOLD:
        raise HarnessError(f"--format: unknown format {fmt!r}; use markdown, csv, latex or html")
    winners = {m: best(table, m, directions) for m in metrics}
    header = ["strategy", "n", "bad", *metrics] + (["rank"] if "rank" in table else [])
    rows = []
    name = escape if fmt == "html" else str  # a strategy is any YAML key: escape it
    for strategy in table.index:
        cells = [name(strategy), str(table.at[strategy, "n"]), str(table.at[strategy, "bad"])]
        for m in metrics:
            text = _cell(table, strategy, m)
            cells.append(BOLD[fmt].format(text) if strategy in winners[m] else text)
        if "rank" in table:
            rank = table.at[strategy, "rank"]
            cells.append("–" if pd.isna(rank) else f"{rank:.0f}")  # no usable run: no rank
        rows.append(cells)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + f"\n\n{note}\n"
    if fmt == "latex":
        lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule"]
        lines += [" & ".join(_latex(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(_latex(c) for c in r) + r" \\" for r in rows]
        lines += [r"\bottomrule", r"\end{tabular}", f"% {note}"]
        return "\n".join(lines) + "\n"
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    html = f"<table class='results'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"{html}\n<p class='note'>{note}</p>\n"


def _latex(text: str) -> str:
    return text.replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$")


def default_metrics(frame: pd.DataFrame, directions: dict[str, str]) -> list[str]:
    """The metrics a table shows unless told: the end-of-run table's, where present."""
    return [m for m in SHOWN if m in frame and frame[m].notna().any()]
