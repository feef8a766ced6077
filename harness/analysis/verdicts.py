"""The one rule that decides what a comparison of two strategies may say: ``harness table
--compare A B`` and every generated sentence of the docs use it, and nothing else may claim a
difference.

For each metric, over the runs both strategies have (a run is a seed, or a sweep's setting and
seed; strategies with the same runs are paired):

1. **Enough runs.** Each strategy needs at least :data:`MIN_RUNS` usable runs (finished; a
   diverged or failed run has no value), else *no verdict*. A metric without a direction
   (which way is better) gets *no direction*.
2. **The test.** Paired when both ran the same seeds (and settings): the paired t-test on the
   differences; otherwise Welch's t-test. Differences within a relative :data:`TOLERANCE` of
   the values are zero (floating-point noise, 0.1 + 0.2 vs 0.3). Where the t statistic is
   undefined, because a side (or the paired differences) has no spread — counts that tie, a
   constant gap — an exact permutation test is used instead (sign flips when paired,
   relabellings otherwise); identical values on both sides are *no difference*.
3. **The correction.** Holm's step-down correction over every comparison tested in that table
   (each metric, and each sweep setting when a table compares setting by setting), at
   family-wise :data:`ALPHA` = 0.05.
4. **The words.** *separates* — A or B better — only when the Holm-adjusted p is below 0.05
   and the bootstrap 95 % interval of the difference of means excludes 0; otherwise *cannot
   separate* (tested, not significant) or *no verdict* (untestable, with the reason).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from harness.core.errors import HarnessError

ALPHA = 0.05
MIN_RUNS = 3
TOLERANCE = 1e-9  # relative to the largest |value| compared
RESAMPLES = 10_000
MAX_EXACT = 20_000  # permutations enumerated exactly at most (else drawn at random)


def compare(
    frame: pd.DataFrame,
    a: str,
    b: str,
    metrics: list[str],
    directions: dict[str, str],
    usable: tuple[str, ...] = ("finished", "skipped"),
    by_setting: bool = False,
) -> pd.DataFrame:
    """One row per metric (per metric and sweep setting with ``by_setting``, labelled
    ``metric @ setting``): both means, the difference A − B with its bootstrap 95 % interval,
    the test and its p, the Holm-adjusted p over every row, and the verdict of the rule above."""
    known = set(frame["strategy"])
    for name in (a, b):
        if name not in known:
            raise HarnessError(
                f"--compare: no strategy {name!r}; known: {', '.join(sorted(known))}"
            )
    runs = frame[frame["status"].isin(usable)]
    unit = ["setting", "seed"] if "setting" in runs else ["seed"]
    settings = sorted(frame["setting"].unique()) if by_setting else [None]
    rows, ways = [], []
    for setting in settings:
        part = runs if setting is None else runs[runs["setting"] == setting]
        side = {s: part[part["strategy"] == s].set_index(unit) for s in (a, b)}
        for metric in metrics:
            label = metric if setting is None else f"{metric} @ {setting}"
            rows.append(test_metric(side[a], side[b], metric) | {"metric": label})
            ways.append(directions.get(metric))
    table = pd.DataFrame(rows).set_index("metric")
    table["p_holm"] = holm(table["p_value"])
    table["verdict"] = [
        verdict(row, a, b, way) for (_, row), way in zip(table.iterrows(), ways, strict=True)
    ]
    return table.rename(columns={"mean_a": a, "mean_b": b})


def test_metric(x_runs: pd.DataFrame, y_runs: pd.DataFrame, metric: str) -> dict:
    """The test of one metric: means, difference, bootstrap interval, p (NaN when untested)
    and why it was not tested."""
    x = x_runs[metric].dropna() if metric in x_runs else pd.Series(dtype=float)
    y = y_runs[metric].dropna() if metric in y_runs else pd.Series(dtype=float)
    row = {"metric": metric, "mean_a": x.mean(), "mean_b": y.mean(), "n": min(len(x), len(y))}
    row |= {"difference": x.mean() - y.mean(), "ci95_low": np.nan, "ci95_high": np.nan}
    row |= {"p_value": np.nan, "test": "", "reason": ""}
    if min(len(x), len(y)) < MIN_RUNS:
        return row | {"reason": f"{min(len(x), len(y))} runs, at least {MIN_RUNS} a side"}
    scale = max(float(np.abs(np.concatenate([x, y])).max()), 1e-300)
    paired = sorted(x.index) == sorted(y.index)
    rng = np.random.default_rng(0)
    if paired:
        d = (x - y.loc[x.index]).to_numpy().copy()
        d[np.abs(d) <= TOLERANCE * scale] = 0.0
        boots = rng.choice(d, (RESAMPLES, len(d))).mean(axis=1)
        if not d.any():
            return row | {"reason": "identical values", "test": "paired"}
        spread = d.std() > TOLERANCE * scale
        p = stats.ttest_1samp(d, 0.0).pvalue if spread else sign_flip_p(d)
        test = "paired t" if spread else "paired exact permutation"
    else:
        xs, ys = x.to_numpy(), y.to_numpy()
        boots = rng.choice(xs, (RESAMPLES, len(xs))).mean(1) - rng.choice(
            ys, (RESAMPLES, len(ys))
        ).mean(1)
        if np.ptp(np.concatenate([xs, ys])) <= TOLERANCE * scale:
            return row | {"reason": "identical values", "test": "Welch"}
        spread = min(xs.std(), ys.std()) > TOLERANCE * scale
        p = stats.ttest_ind(xs, ys, equal_var=False).pvalue if spread else relabel_p(xs, ys)
        test = "Welch t" if spread else "exact permutation"
    low, high = np.percentile(boots, [2.5, 97.5])
    return row | {"ci95_low": low, "ci95_high": high, "p_value": float(p), "test": test}


def sign_flip_p(d: np.ndarray) -> float:
    """Two-sided exact p of the mean paired difference under random signs."""
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1, -1), repeat=len(d))))
    if len(signs) > MAX_EXACT:
        signs = np.random.default_rng(0).choice((1, -1), (MAX_EXACT, len(d)))
    means = np.abs((signs * d).mean(axis=1))
    return float((means >= observed - 1e-12).mean())


def relabel_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided exact p of the difference of means under random relabelling of the runs."""
    pooled = np.concatenate([x, y])
    observed = abs(x.mean() - y.mean())
    splits = list(itertools.combinations(range(len(pooled)), len(x)))
    if len(splits) > MAX_EXACT:
        rng = np.random.default_rng(0)
        splits = [rng.choice(len(pooled), len(x), replace=False) for _ in range(MAX_EXACT)]
    hits = 0
    for chosen in splits:
        mask = np.zeros(len(pooled), bool)
        mask[list(chosen)] = True
        hits += abs(pooled[mask].mean() - pooled[~mask].mean()) >= observed - 1e-12
    return hits / len(splits)


def holm(p: pd.Series) -> pd.Series:
    """Holm's step-down adjusted p-values over the tested (non-NaN) ones."""
    tested = p.dropna().sort_values()
    m, running, out = len(tested), 0.0, pd.Series(np.nan, index=p.index)
    for i, (key, value) in enumerate(tested.items()):
        running = max(running, min(1.0, (m - i) * value))
        out[key] = running
    return out


def verdict(row: pd.Series, a: str, b: str, direction: str | None) -> str:
    """The words the rule grants: "separates: A better", "cannot separate", "no verdict …"."""
    if direction is None:
        return "no direction"
    if row["reason"] == "identical values":
        return "no difference"
    if row["reason"]:
        return f"no verdict ({row['reason']})"
    excludes_zero = not row["ci95_low"] <= 0 <= row["ci95_high"]
    if not (row["p_holm"] < ALPHA and excludes_zero):
        return "cannot separate"
    a_better = (row["difference"] < 0) == (direction == "min")
    return f"separates: {a if a_better else b} better"


def sentence(table: pd.DataFrame, a: str, b: str) -> str:
    """The comparison in one sentence: the rows grouped by the words the rule grants."""
    groups: dict[str, list[str]] = {}
    for metric, row in table.iterrows():
        groups.setdefault(row["verdict"], []).append(f"`{metric}`")
    tested = int(table["p_value"].notna().sum())
    parts = [f"{words} on {', '.join(metrics)}" for words, metrics in groups.items()]
    runs = int(table["n"].min()) if len(table) else 0
    return (
        f"`{a}` against `{b}` ({tested} comparison{'s' * (tested != 1)} tested, Holm-corrected, "
        f"{runs} runs a side): " + "; ".join(parts) + ".\n"
    )


def render(table: pd.DataFrame, a: str, b: str, fmt: str = "markdown") -> str:
    """The comparison as markdown (or csv), with the rule in a footnote."""
    note = (
        f"{a} − {b} over their runs; 95 % bootstrap interval; paired t (Welch's t when the runs "
        f"differ; an exact permutation test without spread); Holm-adjusted over the "
        f"{int(table['p_value'].notna().sum())} comparisons tested; a difference separates when "
        f"p (Holm) < {ALPHA} and the interval excludes 0 (docs: harness.analysis.verdicts)"
    )
    if fmt == "csv":
        return table.to_csv() + f"# {note}\n"
    if fmt != "markdown":
        raise HarnessError(f"--format {fmt}: a comparison is markdown or csv")
    header = ["metric", a, b, "difference", "95 % interval", "p", "p (Holm)", "test", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric, row in table.iterrows():
        interval = (
            "–" if pd.isna(row["ci95_low"]) else f"[{row['ci95_low']:.4g}, {row['ci95_high']:.4g}]"
        )
        cells = [metric, _num(row[a]), _num(row[b]), _num(row["difference"]), interval]
        cells += [_num(row["p_value"]), _num(row["p_holm"]), row["test"] or "–", row["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{note}\n"


def _num(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"
