"""The end-of-run table: strategies × metrics, mean ± std over seeds."""

from __future__ import annotations

import pandas as pd

from harness.registry import Registry

SHOWN_FIRST = ("modes_covered", "hq_fraction", "reverse_kl", "kl_to_uniform", "fid_mnist")


def directions(registry: Registry) -> dict[str, str]:
    """Which way is better for every metric name any registered metric reports."""
    out: dict[str, str] = {}
    for info in registry.parts["metric"].values():
        out.update(info.cls.directions)
    return out


def outcomes_frame(outcomes) -> pd.DataFrame:
    rows = [
        {"strategy": o.spec.strategy, "seed": o.spec.seed, "status": o.status, **o.metrics}
        for o in outcomes
    ]
    return pd.DataFrame(rows)


def summary_table(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean ± std per strategy over seeds, with run counts by status."""
    order = list(dict.fromkeys(frame["strategy"]))
    groups = frame.groupby("strategy", sort=False)
    table = pd.DataFrame(index=pd.Index(order, name="strategy"))
    table["runs"] = groups.size()
    bad = frame[frame["status"].isin(["diverged", "failed"])]
    table["diverged|failed"] = bad.groupby("strategy").size().reindex(order, fill_value=0)
    for column in columns:
        if column not in frame:
            continue
        stats = groups[column].agg(["mean", "std"])
        table[column] = [
            "–" if pd.isna(m) else f"{m:.3g}" + ("" if pd.isna(s) else f" ± {s:.2g}")
            for m, s in zip(stats["mean"], stats["std"], strict=True)
        ]
    return table


def summary_columns(frame: pd.DataFrame, registry: Registry) -> list[str]:
    known = directions(registry)
    first = [c for c in SHOWN_FIRST if c in frame]
    rest = [c for c in known if c in frame and c not in first]
    return first + rest + [c for c in ("sec_per_step",) if c in frame]
