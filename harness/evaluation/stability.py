"""Stability of a training curve: best vs final, area under the curve, tail oscillation,
steps to a threshold."""

from __future__ import annotations

import numpy as np


def curve_stability(
    curve: list[tuple[int, float]],
    *,
    lower_is_better: bool = True,
    tail: int = 3,
    threshold: float | None = None,
) -> dict[str, float]:
    """Summaries of an evaluation curve [(step, value), ...].

    ``auc`` is the step-weighted mean value (trapezoid rule, so curves of different lengths
    compare); ``oscillation`` is the std of the last ``tail`` values; ``steps_to_threshold``
    the first step at which the threshold is reached (absent when never).
    """
    steps = np.array([s for s, _ in curve], dtype=float)
    values = np.array([v for _, v in curve], dtype=float)
    best = values.min() if lower_is_better else values.max()
    final = values[-1]
    out = {
        "best": float(best),
        "final": float(final),
        "best_final_gap": float(abs(final - best)),
        "oscillation": float(values[-tail:].std()) if len(values) > 1 else 0.0,
    }
    span = steps[-1] - steps[0]
    mean_value = np.trapezoid(values, steps) / span if span > 0 else values[0]
    out["auc"] = float(mean_value)
    if threshold is not None:
        reached = values <= threshold if lower_is_better else values >= threshold
        if reached.any():
            out["steps_to_threshold"] = float(steps[reached.argmax()])
    return out
