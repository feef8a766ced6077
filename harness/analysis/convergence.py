"""The convergence criterion the docs state for every default profile: a strategy's run has
**levelled off** when the mean of its headline metric over seeds changed, between the last two
evaluations, by no more than the metric's spread over seeds at the last one (the sample
standard deviation). One seed has no spread: no criterion. A strategy whose runs did not all
reach the last evaluation step is not levelled off (a diverged run stopped early)."""

from __future__ import annotations

import math

import pandas as pd

MIN_SEEDS = 2


def convergence(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per strategy (and setting, in a sweep): the last two evaluation steps, the mean at each,
    the change, the seed spread at the last, and whether the criterion holds."""
    data = curves[curves["metric"] == metric]
    rows = []
    keys = ["strategy", "setting"] if data["setting"].fillna("").ne("").any() else ["strategy"]
    for key, group in data.groupby(keys, sort=False):
        steps = sorted(group["step"].unique())
        name = key if isinstance(key, str) else " @ ".join(map(str, key))
        seeds = group["seed"].nunique()
        last = group[group["step"] == steps[-1]]["value"]
        row = {"strategy": name, "seeds": seeds, "last_step": steps[-1]}
        if len(steps) < 2:
            rows.append(row | {"verdict": "one evaluation: no criterion"})
            continue
        before = group[group["step"] == steps[-2]]["value"]
        change = last.mean() - before.mean()
        spread = last.std(ddof=1) if len(last) > 1 else math.nan
        row |= {"previous_step": steps[-2], "previous": before.mean(), "last": last.mean()}
        row |= {"change": change, "spread": spread}
        if len(last) < seeds:
            verdict = "no: a run stopped before the last evaluation"
        elif seeds < MIN_SEEDS:
            verdict = "one seed: no criterion"
        else:
            verdict = "yes" if abs(change) <= spread + 1e-12 else "no"
        rows.append(row | {"verdict": verdict})
    return pd.DataFrame(rows)


def render(table: pd.DataFrame, metric: str) -> str:
    header = (
        "| strategy | seeds | steps | mean before → last | change | seed spread | levelled off |"
    )
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        if "change" not in row or pd.isna(row.get("change")):
            cells = [row["strategy"], str(row["seeds"]), f"{row['last_step']:,}", "–", "–", "–"]
        else:
            cells = [
                row["strategy"],
                str(row["seeds"]),
                f"{row['previous_step']:,} → {row['last_step']:,}",
                f"{row['previous']:.4g} → {row['last']:.4g}",
                f"{row['change']:+.4g}",
                "–" if pd.isna(row["spread"]) else f"{row['spread']:.4g}",
            ]
        lines.append("| " + " | ".join([*cells, row["verdict"]]) + " |")
    note = (
        f"{metric}: levelled off when |change of the mean over seeds between the last two "
        "evaluations| ≤ the standard deviation over seeds at the last (harness.analysis."
        "convergence)"
    )
    return "\n".join(lines) + f"\n\n{note}\n"
