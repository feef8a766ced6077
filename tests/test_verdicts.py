"""The verdict rule (harness.analysis.verdicts) on hand-made runs: Holm decides among several
comparisons, zero spread and float noise are not significance, too few runs are no verdict."""

import numpy as np
import pandas as pd
import pytest

from harness.analysis import verdicts


def runs(values: dict[str, dict[str, list[float]]], seeds=None) -> pd.DataFrame:
    """A frame of finished runs: values[strategy][metric] over seeds 0, 1, …"""
    rows = []
    for strategy, metrics in values.items():
        n = len(next(iter(metrics.values())))
        for i, seed in enumerate(seeds[strategy] if seeds else range(n)):
            rows.append(
                {"strategy": strategy, "seed": seed, "setting": "", "status": "finished"}
                | {m: v[i] for m, v in metrics.items()}
            )
    return pd.DataFrame(rows)


def test_float_noise_is_no_difference_not_a_verdict():
    frame = runs({"a": {"m": [0.3, 0.3, 0.3]}, "b": {"m": [0.1 + 0.2] * 3}})
    out = verdicts.compare(frame, "a", "b", ["m"], {"m": "min"})
    assert out.loc["m", "verdict"] == "no difference"  # -5.6e-17 is not "b better"


def test_zero_spread_uses_an_exact_permutation_test():
    frame = runs({"a": {"m": [10.0, 10.0, 10.0]}, "b": {"m": [8.0, 8.0, 8.0]}})
    out = verdicts.compare(frame, "a", "b", ["m"], {"m": "max"})
    assert out.loc["m", "test"] == "paired exact permutation"
    assert out.loc["m", "p_value"] == pytest.approx(2 / 8)  # all 3 signs alike: 2 of 2**3
    assert out.loc["m", "verdict"] == "cannot separate"
    six = runs({"a": {"m": [10.0] * 6}, "b": {"m": [8.0] * 6}})
    assert verdicts.compare(six, "a", "b", ["m"], {"m": "max"}).loc["m", "p_value"] == 2 / 64
    unpaired = runs(
        {"a": {"m": [4.0] * 4}, "b": {"m": [8.0] * 4}}, seeds={"a": [0, 1, 2, 3], "b": [4, 5, 6, 7]}
    )
    out = verdicts.compare(unpaired, "a", "b", ["m"], {"m": "max"})
    assert out.loc["m", "test"] == "exact permutation"
    assert out.loc["m", "p_value"] == pytest.approx(2 / 70)  # C(8, 4) relabellings
    assert out.loc["m", "verdict"] == "separates: b better"


def test_two_runs_a_side_are_no_verdict():
    frame = runs({"a": {"m": [1.0, 2.0]}, "b": {"m": [5.0, 6.0]}})
    out = verdicts.compare(frame, "a", "b", ["m"], {"m": "max"})
    assert out.loc["m", "verdict"] == "no verdict (2 runs, at least 3 a side)"


def test_holm_decides_among_six_comparisons():
    rng = np.random.default_rng(3)
    base = rng.normal(size=5)
    shifts = {"m0": 0.9, "m1": 0.02, "m2": 0.03, "m3": 0.01, "m4": 0.0, "m5": 0.02}
    noise = {m: rng.normal(scale=0.3, size=5) for m in shifts}
    a = {m: list(base + noise[m] + s) for m, s in shifts.items()}
    b = {m: list(base) for m in shifts}
    frame = runs({"a": a, "b": b})
    directions = dict.fromkeys(shifts, "max")
    out = verdicts.compare(frame, "a", "b", list(shifts), directions)
    alone = verdicts.compare(frame, "a", "b", ["m0"], directions)
    p = out.loc["m0", "p_value"]
    assert p < 0.05 and alone.loc["m0", "verdict"] == "separates: a better"
    assert out.loc["m0", "p_holm"] == pytest.approx(min(1, 6 * p))  # the smallest of six
    assert out.loc["m0", "p_holm"] > 0.05 and out.loc["m0", "verdict"] == "cannot separate"


def test_sweeps_pair_runs_by_setting_and_seed():
    rows = [
        {"strategy": s, "setting": setting, "seed": seed, "status": "finished", "m": v}
        for s, offset in (("a", 1.0), ("b", 0.0))
        for setting in ("A", "B")
        for seed, v in ((0, 5.0 + offset), (1, 6.0 + offset), (2, 7.5 + offset))
    ]
    out = verdicts.compare(pd.DataFrame(rows), "a", "b", ["m"], {"m": "max"})
    assert out.loc["m", "n"] == 6 and out.loc["m", "test"] == "paired exact permutation"


def test_the_sentence_groups_metrics_by_the_words_the_rule_grants():
    frame = runs(
        {
            "a": {"up": [10.0, 11.0, 12.0, 13.0], "flat": [1.0, 2.0, 1.0, 2.0]},
            "b": {"up": [1.0, 1.5, 2.0, 2.0], "flat": [2.0, 1.0, 2.0, 1.0]},
        }
    )
    table = verdicts.compare(frame, "a", "b", ["up", "flat"], {"up": "max", "flat": "max"})
    assert verdicts.sentence(table, "a", "b") == (
        "`a` against `b` (2 comparisons tested, Holm-corrected, 4 runs a side): "
        "separates: a better on `up`; cannot separate on `flat`.\n"
    )


def test_setting_by_setting_comparisons_are_corrected_over_the_settings():
    """Six settings, one clear difference: alone it separates, among six it must survive
    Holm over all six rows."""
    rows = []
    for setting, shift in zip("ABCDEF", [3.0, 0.0, 0.1, -0.1, 0.05, 0.0], strict=True):
        for seed in range(4):
            noise = [0.3, -0.2, 0.1, -0.25][seed]
            for strategy, value in (("a", 5 + shift + noise), ("b", 5.0 + noise / 2)):
                rows.append(
                    {"strategy": strategy, "seed": seed, "setting": setting}
                    | {"status": "finished", "m": value}
                )
    frame = pd.DataFrame(rows)
    table = verdicts.compare(frame, "a", "b", ["m"], {"m": "max"}, by_setting=True)
    assert list(table.index) == [f"m @ {s}" for s in "ABCDEF"]
    assert table.loc["m @ A", "p_holm"] == pytest.approx(min(1, 6 * table.loc["m @ A", "p_value"]))
    assert table.loc["m @ A", "verdict"] == "separates: a better"
    assert (table.drop("m @ A")["verdict"] != "separates: a better").all()
