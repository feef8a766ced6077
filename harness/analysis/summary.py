"""The end-of-run table: strategies × metrics, mean ± std over seeds."""

from __future__ import annotations

import pandas as pd

SHOWN = (  # the end-of-run table's columns, when present; `harness table` shows everything
    "modes_covered",
    "hq_fraction",
    "reverse_kl",
    "kl_to_uniform",
    "fid_mnist",
    "fid_mnist_floor",
    "recall_mnist",
    "w1_exact",
    "w1_critic",
    "grad_norm_interp_mean",
    "grad_norm_generator_mean",
    "sec_per_step",
)


def outcomes_frame(outcomes) -> pd.DataFrame:
    """A row per run outcome of an invocation: strategy (with its setting), seed, status and
    the final metrics."""
    rows = [
        {
            "strategy": o.spec.strategy + (f" @ {o.spec.setting}" if o.spec.setting else ""),
            "seed": o.spec.seed,
            "status": o.status,
            **o.metrics,
        }
        for o in outcomes
    ]
    return pd.DataFrame(rows)


def summary_table(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean ± std per strategy over seeds, with run counts (``bad``: diverged or failed)."""
    order = list(dict.fromkeys(frame["strategy"]))
    groups = frame.groupby("strategy", sort=False)
    table = pd.DataFrame(index=pd.Index(order, name="strategy"))
    table["runs"] = groups.size()
    bad = frame[frame["status"].isin(["diverged", "failed"])]
    table["bad"] = bad.groupby("strategy").size().reindex(order, fill_value=0)
    for column in columns:
        if column not in frame:
            continue
        stats = groups[column].agg(["mean", "std"])
        table[column] = [
            "–" if pd.isna(m) else f"{m:.3g}" + ("" if pd.isna(s) else f" ± {s:.2g}")
            for m, s in zip(stats["mean"], stats["std"], strict=True)
        ]
    return table


def summary_columns(frame: pd.DataFrame) -> list[str]:
    """The end-of-run table's columns present in ``frame``."""
    return [c for c in SHOWN if c in frame]
