"""Robustness over hyperparameter settings (Lucic et al. 2018; Kurach et al. 2019): a metric's
distribution over a sweep's settings per strategy, and the best value reachable within a
budget of k settings drawn at random.

A setting's value is the median of the metric over its usable seeds. A setting *trains* when
none of its runs diverged or failed; one that did not train has no value, and counts as the
worst possible value in budget estimates (so a strategy that often diverges pays for it).
"""

from __future__ import annotations

import difflib
import math

import numpy as np
import pandas as pd

from harness.analysis import plotting
from harness.analysis.plotting import Figure
from harness.analysis.tables import BAD, OK, aggregate, footnote
from harness.analysis.tables import render as render_table
from harness.core.errors import HarnessError
from harness.core.registry import Registry

COVERAGE_SHARE = 0.9  # a setting "covers" when its modes_covered reaches 90 % of the modes
COST = ("sec_per_step", "critic_passes_per_step", "peak_memory_mb")  # no budget curves for these


def expected_best(values, k: int, direction: str = "max") -> float:
    """E[best of k settings drawn without replacement from ``values``], exactly:
    sum_i v_(i) C(i-1, k-1) / C(n, k) over the values sorted from worst to best (Lucic et al.).
    NaN values are the worst; when k draws may all be NaN the expectation is ±inf."""
    worst = -math.inf if direction == "max" else math.inf
    v = np.array([worst if pd.isna(x) else float(x) for x in values])
    n = len(v)
    if not 1 <= k <= n:
        raise HarnessError(f"budget k={k} needs 1 ≤ k ≤ {n} settings")
    ordered = np.sort(v) if direction == "max" else -np.sort(-v)  # worst first
    total = math.comb(n, k)
    best = 0.0
    for i in range(k, n + 1):  # 1-based rank i: the best of k is v_(i) with this probability
        if math.isinf(ordered[i - 1]):
            return float(ordered[i - 1])
        best += ordered[i - 1] * (math.comb(i - 1, k - 1) / total)
    return best


def budgets(n: int) -> list[int]:
    """k = 1, 2, 4, … up to n, and n itself."""
    ks = [2**j for j in range(n.bit_length()) if 2**j <= n]
    return ks + ([n] if ks[-1] != n else [])


def per_setting(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (strategy, setting): runs, whether it trained, and the median of ``metric``
    (and of ``modes_covered``) over its usable seeds."""
    if "setting" not in frame or frame["setting"].eq("").all():
        raise HarnessError("these runs come from no sweep: nothing to compare over settings")
    if metric not in frame:
        raise HarnessError(f"no metric {metric!r} in these runs")
    rows = []
    frame = frame[frame["status"].isin(OK + BAD)]  # runs still going (or killed) say nothing yet
    frame = frame.sort_values(["strategy", "setting"], key=_order(frame), kind="stable")
    for (strategy, setting), runs in frame.groupby(["strategy", "setting"], sort=False):
        usable = runs[runs["status"].isin(OK)]
        row = {
            "strategy": strategy,
            "setting": setting,
            "runs": len(runs),
            "trains": not runs["status"].isin(BAD).any() and len(usable) > 0,
            "value": usable[metric].median() if len(usable) else np.nan,
        }
        if "modes_covered" in runs:
            row["modes_covered"] = usable["modes_covered"].median() if len(usable) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def robustness(
    frame: pd.DataFrame,
    metric: str,
    directions: dict[str, str],
    modes: int | None = None,
) -> pd.DataFrame:
    """Per strategy over its settings: the best setting that trained and its value (a setting
    with a diverged or failed run is the worst, as in the budgets), median and IQR of the
    settings that trained, the share that train and that cover ≥ 90 % of ``modes``, and the
    expected best value within budgets of k random settings (columns ``best_of_k``)."""
    if metric not in frame:
        close = difflib.get_close_matches(metric, [c for c in directions if c in frame], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise HarnessError(f"--metric: no metric {metric!r} in these runs{hint}")
    if metric not in directions:
        raise HarnessError(f"--metric {metric}: no direction (better is neither min nor max)")
    direction = directions[metric]
    settings = per_setting(frame, metric)
    ks = budgets(int(settings.groupby("strategy").size().max()))
    rows = []
    for strategy, group in settings.groupby("strategy", sort=False):
        values = group["value"]
        trained = values[group["trains"]].dropna()
        row = {"strategy": strategy, "settings": len(group)}
        if len(trained):  # the best of the settings that train: a diverged one is the worst
            at = trained.idxmax() if direction == "max" else trained.idxmin()
            row["best_setting"], row["best"] = group.at[at, "setting"] or "–", trained[at]
        else:
            row["best_setting"], row["best"] = "–", np.nan
        row["median"] = trained.median() if len(trained) else np.nan
        row["iqr"] = trained.quantile(0.75) - trained.quantile(0.25) if len(trained) else np.nan
        row["trains"] = group["trains"].mean()
        if modes and "modes_covered" in group:
            row["covers_90"] = (group["modes_covered"] >= COVERAGE_SHARE * modes).mean()
        for k in ks:  # a strategy with fewer settings than k: no value
            fits = k <= len(group)
            row[f"best_of_{k}"] = (
                expected_best(values.where(group["trains"]), k, direction) if fits else np.nan
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("strategy")


def by_setting(frame: pd.DataFrame, metrics: list[str], directions: dict[str, str]):
    """The usual table (mean ± 95 % CI over seeds) with a row per strategy × setting."""
    if "setting" not in frame or frame["setting"].eq("").all():
        raise HarnessError("--by setting: these runs come from no sweep")
    frame = frame.sort_values(["strategy", "setting"], key=_order(frame), kind="stable")
    at = frame["setting"].map(lambda s: f" @ {s}" if s else "")  # a strategy outside the sweep
    labelled = frame.assign(strategy=frame["strategy"] + at)
    return aggregate(labelled, metrics, directions)


def _order(frame: pd.DataFrame):
    """Strategies in their first-seen order, settings in natural (sorted) order."""
    first = {s: i for i, s in enumerate(dict.fromkeys(frame["strategy"]))}
    return lambda column: column.map(first) if column.name == "strategy" else column


def _number(x: float) -> str:
    if pd.isna(x):
        return "–"
    if math.isinf(x):
        return "may diverge"
    return f"{x:.4g}"


def render(table: pd.DataFrame, metric: str, direction: str, fmt: str = "markdown") -> str:
    """The robustness table as markdown or csv, with its definitions as a footnote."""
    note = (
        f"{metric} ({'higher' if direction == 'max' else 'lower'} is better); a setting's value "
        "is the median over its seeds; median and IQR over the settings that train (no run "
        "diverged or failed); covers ≥ 90 %: share of settings whose median modes_covered "
        "reaches 90 % of the modes; best of k: expected best value of k settings drawn at "
        "random without replacement (exact; a setting that did not train is the worst, "
        "'may diverge': all k may fail)"
    )
    if fmt == "csv":
        return table.to_csv() + f"# {note}\n"
    if fmt != "markdown":
        raise HarnessError(f"--format {fmt}: the robustness table is markdown or csv")
    ks = [c for c in table.columns if c.startswith("best_of_")]
    header = ["strategy", "settings", "best setting", "best", "median", "IQR", "trains"]
    header += ["covers ≥ 90 %"] if "covers_90" in table else []
    header += [f"best of {c.removeprefix('best_of_')}" for c in ks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for strategy, row in table.iterrows():
        cells = [str(strategy), str(row["settings"]), str(row["best_setting"])]
        cells += [_number(row[c]) for c in ("best", "median", "iqr")]
        cells.append(f"{row['trains']:.0%}")
        if "covers_90" in table:
            cells.append(f"{row['covers_90']:.0%}")
        cells += [_number(row[c]) for c in ks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{note}\n"


def modes_of(frame: pd.DataFrame) -> int | None:
    """How many modes the runs' dataset has (None when unknown or mixed)."""
    names = frame["dataset.name"].dropna().unique() if "dataset.name" in frame else []
    if len(names) != 1:
        return None
    params = {}
    if "dataset.params.source" in frame and frame["dataset.params.source"].notna().any():
        params["source"] = frame["dataset.params.source"].dropna().iloc[0]
    try:
        modes = Registry().create("dataset", names[0], params).modes
    except HarnessError:
        return None
    return getattr(modes, "count", None)


# --- figures (embedded by the report) ------------------------------------------------


def settings_figure(frame: pd.DataFrame, metrics: list[str], colors: dict) -> Figure | None:
    """A panel per metric: per strategy a box over its settings' values (median over seeds)
    with a labelled dot per setting; a setting that did not train is an x at the bottom."""
    # a metric that is the same in every run (a real-vs-real floor) has nothing to show
    metrics = [m for m in metrics if m in frame and frame[m].nunique() > 1]
    if not metrics or "setting" not in frame or frame["setting"].eq("").all():
        return None
    fig, axes = plotting.grid(len(metrics), width=4.4, height=3.2)
    for ax, metric in zip(axes, metrics, strict=True):
        settings = per_setting(frame, metric)
        strategies = list(dict.fromkeys(settings["strategy"]))
        ok = [
            settings.loc[(settings["strategy"] == s) & settings["trains"], "value"].dropna()
            for s in strategies
        ]
        ax.boxplot(
            ok,
            positions=range(len(strategies)),
            widths=0.5,
            showfliers=False,
            medianprops={"color": "k"},
        )
        rng = np.random.default_rng(0)
        for i, strategy in enumerate(strategies):
            rows = settings[settings["strategy"] == strategy]
            jitter = rng.uniform(-0.18, 0.18, len(rows))
            good = rows["trains"].to_numpy() & rows["value"].notna().to_numpy()
            ax.scatter(
                i + jitter[good], rows["value"][good], s=14, color=colors.get(strategy), zorder=3
            )
            if len(rows) <= 8:
                for x, (_, row) in zip(i + jitter[good], rows[good].iterrows(), strict=True):
                    ax.annotate(
                        row["setting"],
                        (x, row["value"]),
                        fontsize=6,
                        xytext=(3, 0),
                        textcoords="offset points",
                    )
            if (~good).any():
                floor = np.nanmin(settings["value"]) if settings["value"].notna().any() else 0
                ax.scatter(
                    i + jitter[~good],
                    np.full((~good).sum(), floor),
                    marker="x",
                    color="crimson",
                    zorder=3,
                )
        ax.set_xticks(range(len(strategies)), strategies, rotation=30, ha="right")
        if plotting.spread(settings["value"]):
            ax.set_yscale("log")
        plotting.style(ax, metric)
    return Figure(
        "settings",
        "Each metric over the sweep's settings",
        "Box: quartiles over the settings that trained; dot: one setting (median over its "
        "seeds); red x: a setting with a diverged or failed run.",
        plotting.png(fig),
    )


def budget_figure(
    frame: pd.DataFrame, metrics: list[str], directions: dict, colors: dict
) -> Figure | None:
    """A panel per metric: the expected best value within a budget of k random settings."""
    metrics = [
        m for m in metrics if m in directions and m not in COST and plotting.present(frame, m)
    ]
    if not metrics or "setting" not in frame or frame["setting"].eq("").all():
        return None
    fig, axes = plotting.grid(len(metrics), width=4.2, height=3.0)
    for ax, metric in zip(axes, metrics, strict=True):
        table = robustness(frame, metric, directions)
        ks = [int(c.removeprefix("best_of_")) for c in table if c.startswith("best_of_")]
        for strategy, row in table.iterrows():
            values = np.array([row[f"best_of_{k}"] for k in ks], dtype=float)
            shown = np.isfinite(values)
            ax.plot(
                np.array(ks)[shown],
                values[shown],
                marker="o",
                ms=3,
                color=colors.get(strategy),
                label=strategy,
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("budget k (settings)", fontsize=8)
        plotting.style(
            ax, f"{metric} ({'max' if directions[metric] == 'max' else 'min'} is better)"
        )
    axes[0].legend(fontsize=7)
    return Figure(
        "budgets",
        "Expected best value within a budget of k random settings",
        "E[best of k settings drawn without replacement], exact over the sweep's settings "
        "(Lucic et al. 2018); a setting that did not train counts as the worst, and a point "
        "is missing where all k settings may fail.",
        plotting.png(fig),
    )


def write_markdown(frame: pd.DataFrame, metrics: list[str], directions: dict, path) -> None:
    """``robustness.md`` of a report: the robustness table of every metric with a direction,
    then the table by setting."""
    modes = modes_of(frame)
    parts = ["# Robustness over settings\n"]
    for metric in [m for m in metrics if m in directions and m not in COST]:
        table = robustness(frame, metric, directions, modes)
        parts.append(f"## {metric}\n\n{render(table, metric, directions[metric])}")
    table = by_setting(frame, metrics, directions)
    note = footnote(frame, metrics)
    parts.append(f"## By setting\n\n{render_table(table, metrics, directions, 'markdown', note)}")
    path.write_text("\n".join(parts))
