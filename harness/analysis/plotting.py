"""Plotting helpers every figure of the report uses: a figure as PNG bytes with its title and
caption, a grid of panels, a shared legend, the house style, and when to use a log scale."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Figure:
    name: str  # file stem in the report directory
    title: str
    caption: str
    png: bytes


def plt():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt().close(fig)
    return buffer.getvalue()


def grid(n: int, width: float = 4.2, height: float = 3.0, cols: int = 3):
    """A figure of ``n`` panels, ``cols`` to a row: (figure, the n axes)."""
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt().subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def legend(fig, colors: dict, strategies) -> None:
    """One legend below all panels: a colour swatch per strategy."""
    handles = [plt().Line2D([], [], color=colors[s], lw=6, label=s) for s in strategies]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6))


def spread(values) -> bool:
    """Whether positive values span orders of magnitude (then they are drawn on a log scale)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > 100


def present(frame: pd.DataFrame, metric: str) -> bool:
    """Whether ``frame`` has ``metric`` with at least one value."""
    return metric in frame and frame[metric].notna().any()


def style(ax, title: str) -> None:
    """The house style of a panel: its title, small ticks, a light horizontal grid."""
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)
