"""The convergence criterion on hand-made curves: levelled off when the mean moved between the
last two evaluations by no more than the seed spread at the last."""

import pandas as pd

from harness.analysis.convergence import convergence, render


def curves(values: dict[str, dict[int, list[float]]]) -> pd.DataFrame:
    rows = [
        {"strategy": s, "setting": "", "seed": seed, "metric": "m", "step": step, "value": v}
        for s, by_step in values.items()
        for step, seeds in by_step.items()
        for seed, v in enumerate(seeds)
    ]
    return pd.DataFrame(rows)


def test_levelled_off_only_within_the_seed_spread():
    table = convergence(
        curves(
            {
                "flat": {100: [4.0, 6.0, 5.0], 200: [5.0, 4.0, 6.5]},  # +0.17 within sd 1.26
                "rising": {100: [1.0, 1.0, 2.0], 200: [5.0, 6.0, 5.0]},  # +4 beyond sd 0.58
                "one": {100: [1.0], 200: [1.0]},
            }
        ),
        "m",
    ).set_index("strategy")
    assert table.loc["flat", "verdict"] == "yes"
    assert table.loc["rising", "verdict"] == "no"
    assert table.loc["one", "verdict"] == "one seed: no criterion"
    assert "| rising | 3 | 100 → 200 | 1.333 → 5.333 | +4 | 0.5774 | no |" in render(
        table.reset_index(), "m"
    )


def test_a_run_that_stopped_early_is_not_levelled_off():
    frame = curves({"s": {100: [1.0, 1.0, 1.0], 200: [1.0, 1.0]}})
    assert convergence(frame, "m")["verdict"][0] == "no: a run stopped before the last evaluation"
