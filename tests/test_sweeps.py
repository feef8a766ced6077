"""Sweeps (grid, random, named settings), the suite-level optimizer, and robustness views."""

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.analysis.robustness import budgets, by_setting, expected_best, robustness
from harness.cli import app
from harness.core.errors import HarnessError, SuiteError
from harness.core.sweeps import SweepConfig, expand
from harness.run.loading import load_suite

BASE = """
name: swept
dataset: {name: ring8, n: 2000}
architecture: {name: mlp, width: 8, depth: 2, z_dim: 2}
train: {steps: 4, batch_size: 16, n_critic: 2, log_every: 2}
seeds: [0, 1]
eval: {every: 2, samples: 100}
metrics: [mode_coverage]
"""
STRATEGIES = """
strategies:
  clip: {loss: wasserstein, constraint: {name: weight_clip, c: 0.01}}
  gp: {loss: wasserstein, constraint: gradient_penalty}
"""


def suite(write_suite, extra: str, strategies: str = STRATEGIES, **kwargs):
    loaded, _ = load_suite(write_suite(BASE + strategies + extra), **kwargs)
    return loaded.runs


# --- expansion ---------------------------------------------------------------------------


def test_grid_is_the_cartesian_product():
    sweep = SweepConfig(grid={"optimizer.lr": [1e-4, 1e-3, 1e-2], "n_critic": [1, 5]})
    settings = expand(sweep)
    assert len(settings) == sweep.size == 6
    assert [s.values for s in settings][:2] == [
        {"optimizer.lr": 1e-4, "n_critic": 1},
        {"optimizer.lr": 1e-4, "n_critic": 5},
    ]
    assert settings[-1].id == "lr=0.01,n_critic=5"
    assert len({s.id for s in settings}) == 6


def test_random_sweep_is_reproducible_from_its_seed_and_in_range():
    params = {
        "optimizer.lr": {"loguniform": [1e-5, 1e-2]},
        "constraint.weight": {"uniform": [1, 10]},
        "n_critic": {"randint": [1, 5]},
        "optimizer.betas": {"choice": [[0.5, 0.9], [0.0, 0.9]]},
    }
    draw = lambda seed: expand(SweepConfig(random={"n": 40, "seed": seed, "params": params}))  # noqa: E731
    first, again, other = draw(3), draw(3), draw(4)
    assert [s.values for s in first] == [s.values for s in again]
    assert [s.values for s in first] != [s.values for s in other]
    assert [s.id for s in first][:3] == ["r00", "r01", "r02"]
    lrs = np.array([s.values["optimizer.lr"] for s in first])
    assert ((lrs >= 1e-5) & (lrs <= 1e-2)).all()
    assert (np.log10(lrs) < -3.5).any() and (np.log10(lrs) > -3.5).any()  # log scale: both halves
    assert {s.values["n_critic"] for s in first} == {1, 2, 3, 4, 5}
    assert all(1 <= s.values["constraint.weight"] <= 10 for s in first)
    assert {tuple(s.values["optimizer.betas"]) for s in first} == {(0.5, 0.9), (0.0, 0.9)}


def test_named_settings_apply_to_every_strategy_with_ids_and_values(write_suite):
    runs = suite(
        write_suite,
        """
optimizer: {name: adam, lr: 1.0e-4, betas: [0.5, 0.9]}
sweep:
  settings:
    A: {optimizer.lr: 1.0e-4, n_critic: 5}
    D: {optimizer: {lr: 1.0e-3, betas: [0.9, 0.999]}, n_critic: 1}
""",
    )
    assert len(runs) == 2 * 2 * 2  # strategies × settings × seeds
    d = [r for r in runs if r.setting == "D"]
    assert {r.strategy for r in d} == {"clip", "gp"}
    assert all(r.optimizer.lr == 1e-3 and r.optimizer.betas == (0.9, 0.999) for r in d)
    assert all(r.train.n_critic == 1 for r in d)
    assert d[0].sweep == {"optimizer.lr": 1e-3, "optimizer.betas": [0.9, 0.999], "n_critic": 1}
    assert len({r.run_key for r in runs}) == len(runs)


def test_strategy_sweep_replaces_the_suites_and_an_empty_one_opts_out(write_suite):
    runs = suite(
        write_suite,
        "sweep: {grid: {optimizer.lr: [1.0e-4, 1.0e-3]}}\n",
        strategies="""
strategies:
  clip: {loss: wasserstein, constraint: weight_clip, sweep: {grid: {constraint.c: [0.01, 0.1]}}}
  gp: {loss: wasserstein, constraint: gradient_penalty}
  sn: {loss: wasserstein, constraint: spectral_norm, sweep: {}}
""",
    )
    by = {s: sorted({r.setting for r in runs if r.strategy == s}, key=str) for s in ("clip", "gp")}
    assert by == {"clip": ["c=0.01", "c=0.1"], "gp": ["lr=0.0001", "lr=0.001"]}
    assert {r.constraint.params["c"] for r in runs if r.strategy == "clip"} == {0.01, 0.1}
    assert [r.setting for r in runs if r.strategy == "sn"] == [None, None]


def test_optimizer_precedence_sweep_over_strategy_over_suite_over_paper(write_suite):
    runs = suite(
        write_suite,
        "optimizer: {name: adam, lr: 3.0e-4, betas: [0.5, 0.9]}\n",
        strategies="""
strategies:
  clip: {loss: wasserstein, constraint: weight_clip}
  gp: {loss: wasserstein, constraint: gradient_penalty, optimizer: {name: sgd, lr: 0.1}}
  sn: {loss: wasserstein, constraint: spectral_norm,
       sweep: {settings: {fast: {optimizer.lr: 1.0e-3}}}}
""",
    )
    first = {r.strategy: r.optimizer for r in runs}
    assert (first["clip"].name, first["clip"].lr) == ("adam", 3e-4)  # not its RMSprop 5e-5
    assert (first["gp"].name, first["gp"].lr) == ("sgd", 0.1)
    assert (first["sn"].name, first["sn"].lr, first["sn"].betas) == ("adam", 1e-3, (0.5, 0.9))
    plain = suite(write_suite, "")
    assert {r.strategy: r.optimizer.name for r in plain} == {"clip": "rmsprop", "gp": "adam"}


def test_a_profile_removes_a_setting_with_null(write_suite):
    runs = suite(
        write_suite,
        """
sweep: {settings: {A: {n_critic: 1}, B: {n_critic: 3}, C: {n_critic: 4}}}
profiles:
  small: {sweep: {settings: {B: null, C: null}}}
""",
        profile="small",
    )
    assert {r.setting for r in runs} == {"A"}


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("{optimizer.lr: 20}", "sweep.settings.D.optimizer.lr"),
        ("{constraint.c: -1}", "sweep.settings.D.constraint.c"),
        ("{constraint.cc: 1}", "sweep.settings.D.constraint.cc"),
        ("{n_critic: 0}", "sweep.settings.D.n_critic"),
        ("{train.stepz: 3}", "sweep.settings.D.train.stepz"),
        ("{optimiser.lr: 1.0e-3}", "sweep.settings.D.optimiser.lr"),
    ],
)
def test_a_bad_setting_is_named_with_its_field_before_training(write_suite, setting, field):
    path = write_suite(
        BASE
        + "strategies:\n  clip: {loss: wasserstein, constraint: weight_clip}\n"
        + f"sweep: {{settings: {{A: {{n_critic: 1}}, D: {setting}}}}}\n"
    )
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    assert str(caught.value).startswith(f"{path}: {field}: ")


def test_a_suite_sweep_over_a_parameter_one_strategy_lacks_names_it(write_suite):
    with pytest.raises(SuiteError, match=r"sweep\.grid\.constraint\.c: .*strategy 'gp'"):
        suite(write_suite, "sweep: {grid: {constraint.c: [0.01, 0.1]}}\n")


def test_bad_distributions_and_duplicate_kinds_are_refused(write_suite):
    bad = "sweep: {random: {n: 2, params: {optimizer.lr: {loguniform: [1.0e-2, 1.0e-5]}}}}\n"
    with pytest.raises(SuiteError, match=r"sweep\.random\.params\.optimizer\.lr.*low"):
        suite(write_suite, bad)
    both = "sweep: {settings: {A: {n_critic: 1}}, grid: {n_critic: [1, 2]}}\n"
    with pytest.raises(SuiteError, match="n_critic is set by two kinds"):
        suite(write_suite, both)


def test_max_runs_guards_an_oversized_sweep_before_expanding(write_suite):
    huge = "sweep: {random: {n: 100000, params: {optimizer.lr: {uniform: [0.001, 0.01]}}}}\n"
    with pytest.raises(SuiteError, match=r"sweep: expands to 400,000 runs .* --max-runs 500"):
        suite(write_suite, huge)
    assert len(suite(write_suite, huge.replace("100000", "3"), max_runs=12)) == 12
    result = CliRunner().invoke(
        app, ["validate", str(write_suite(BASE + STRATEGIES + huge)), "--max-runs", "10"]
    )
    assert result.exit_code == 2 and "--max-runs 10" in result.output


# --- robustness --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 9, 16])
def test_expected_best_of_k_matches_the_closed_form_for_1_to_n(n):
    values = list(range(1, n + 1))
    rng = np.random.default_rng(0)
    for k in range(1, n + 1):
        shuffled = list(rng.permutation(values))
        assert expected_best(shuffled, k, "max") == pytest.approx(k * (n + 1) / (k + 1))
        assert expected_best(shuffled, k, "min") == pytest.approx((n + 1) / (k + 1))


def test_a_setting_that_did_not_train_is_the_worst_in_a_budget():
    values = [1.0, 2.0, float("nan")]
    assert expected_best(values, 1, "max") == -math.inf  # one draw may be the failed setting
    assert expected_best(values, 2, "max") == pytest.approx((2 * 2 + 1 * 1) / 3)  # C(3,2) = 3
    assert expected_best(values, 2, "min") == pytest.approx((1 + 1 + 2) / 3)
    assert budgets(6) == [1, 2, 4, 6] and budgets(8) == [1, 2, 4, 8]
    with pytest.raises(HarnessError):
        expected_best(values, 4)


def synthetic() -> pd.DataFrame:
    """Two strategies over settings A-D, two seeds each, with known values."""
    rows = []
    a = {"A": (8, 6), "B": (7, 7), "C": (2, 4), "D": (8, 8)}  # modes_covered per seed
    for setting, (s0, s1) in a.items():
        rows += [("a", setting, 0, "finished", s0), ("a", setting, 1, "finished", s1)]
    b = {"A": (5, 5), "B": (1, 1), "C": (3, 3)}
    for setting, (s0, s1) in b.items():
        rows += [("b", setting, 0, "finished", s0), ("b", setting, 1, "finished", s1)]
    rows += [("b", "D", 0, "diverged", np.nan), ("b", "D", 1, "finished", 8)]
    rows += [("a", "E", 0, "running", np.nan)]  # not done yet: no evidence either way
    frame = pd.DataFrame(rows, columns=["strategy", "setting", "seed", "status", "modes_covered"])
    return frame.assign(w1_exact=1.0 / (1 + frame["modes_covered"]))


def test_robustness_table_on_known_values():
    table = robustness(synthetic(), "modes_covered", {"modes_covered": "max"}, modes=8)
    a, b = table.loc["a"], table.loc["b"]
    # a: setting medians A 7, B 7, C 3, D 8
    assert (a["settings"], a["best_setting"], a["best"]) == (4, "D", 8)
    assert (a["median"], a["iqr"], a["trains"], a["covers_90"]) == (7, 1.25, 1.0, 0.25)
    assert a["best_of_1"] == pytest.approx((7 + 7 + 3 + 8) / 4)
    assert a["best_of_4"] == 8
    assert a["best_of_2"] == pytest.approx(expected_best([7, 7, 3, 8], 2))
    # b: A 5, B 1, C 3; D has a diverged seed: it does not train, so it is not the best
    assert (b["best_setting"], b["best"], b["median"], b["trains"]) == ("A", 5, 3, 0.75)
    assert b["covers_90"] == 0.25  # D's usable seed covers all 8
    assert b["best_of_1"] == -math.inf and b["best_of_4"] == 5
    low = robustness(synthetic(), "w1_exact", {"w1_exact": "min"})
    assert low.at["a", "best_setting"] == "D" and "covers_90" not in low


def test_by_setting_has_a_row_per_strategy_and_setting_in_natural_order():
    table = by_setting(synthetic(), ["modes_covered"], {"modes_covered": "max"})
    assert list(table.index)[:4] == ["a @ A", "a @ B", "a @ C", "a @ D"]
    assert table.at["a @ A", "modes_covered_mean"] == 7 and table.at["b @ D", "n"] == 1
    assert table.at["b @ D", "bad"] == 1


# --- end to end --------------------------------------------------------------------------


def test_two_setting_sweep_end_to_end_through_tables_and_report(write_suite, tmp_path):
    path = write_suite(  # exact W1 differs between the settings (4 steps cover no mode)
        BASE.replace("seeds: [0, 1]", "seeds: [0]").replace(
            "[mode_coverage]", "[mode_coverage, transport]"
        )
        + "strategies:\n  sn: {loss: wasserstein, constraint: spectral_norm}\n"
        + "sweep: {settings: {slow: {optimizer.lr: 1.0e-5}, fast: {optimizer.lr: 1.0e-3}}}\n"
    )
    (tmp_path / "store").mkdir()
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    cli = CliRunner()
    ran = cli.invoke(app, ["run", str(path), "--tracking-uri", store, "--device", "cpu"])
    assert ran.exit_code == 0, ran.output
    assert "sn @ slow" in ran.output and "sn @ fast" in ran.output
    table = cli.invoke(app, ["table", str(path), "--tracking-uri", store, "--by", "setting"])
    assert table.exit_code == 0, table.output
    assert "| sn @ fast | 1 | 0 |" in table.output and "| sn @ slow | 1 | 0 |" in table.output
    robust = cli.invoke(
        app,
        ["table", str(path), "--tracking-uri", store, "--robustness", "--metric", "hq_fraction"],
    )
    assert robust.exit_code == 0, robust.output
    assert "| sn | 2 |" in robust.output and "best of 2" in robust.output
    out = tmp_path / "report"
    report = cli.invoke(app, ["report", str(path), "--tracking-uri", store, "--out", str(out)])
    assert report.exit_code == 0, report.output
    page = (out / "report.html").read_text()
    assert "id='settings'" in page and "id='budgets'" in page
    assert (out / "settings.png").stat().st_size > 1000
    assert "## modes_covered" in (out / "robustness.md").read_text()
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["setting"]) == ["fast", "slow"]
    assert sorted(runs["sweep.optimizer.lr"]) == [1e-5, 1e-3]
    bad = cli.invoke(app, ["table", str(path), "--tracking-uri", store, "--by", "seed"])
    assert bad.exit_code == 2 and "--by" in bad.output


# --- the shipped sweep suites ------------------------------------------------------------


@pytest.mark.parametrize("name", ["sngan_settings", "sngan_settings_mnist", "toy_sweep"])
def test_shipped_sweep_suites_validate_in_every_profile(name):
    path = f"suites/{name}.yaml"
    runs, _ = load_suite(path)
    assert len(runs.runs) <= 150  # the default profile is sized for a 2-core CPU (tiny runs)
    for profile in runs.config.profiles:
        try:
            assert load_suite(path, profile=profile)[0].runs
        except SuiteError as exc:  # full MNIST lives in --data-dir, not in the test machine
            assert "--data-dir" in str(exc) and profile == "full"


def test_sngan_settings_are_the_papers_table_1():
    runs = load_suite("suites/sngan_settings.yaml")[0].runs
    table = {
        r.setting: (r.optimizer.name, r.optimizer.lr, r.optimizer.betas, r.train.n_critic)
        for r in runs
        if r.strategy == "wgan-clip"
    }
    assert table == {  # Miyato et al. 2018, Table 1 (Adam: alpha, beta1, beta2, n_dis)
        "A": ("adam", 1e-4, (0.5, 0.9), 5),
        "B": ("adam", 1e-4, (0.5, 0.999), 1),
        "C": ("adam", 2e-4, (0.5, 0.999), 1),
        "D": ("adam", 1e-3, (0.5, 0.9), 5),
        "E": ("adam", 1e-3, (0.5, 0.999), 5),
        "F": ("adam", 1e-3, (0.9, 0.999), 5),
    }


def test_mnist_sweep_smoke_profile_trains(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "suites/sngan_settings_mnist.yaml",
            "-p",
            "smoke",
            "--tracking-uri",
            store,
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("finished") >= 6  # 3 strategies × settings A, B


def test_the_best_setting_is_one_that_trains():
    frame = pd.DataFrame(
        [
            {"strategy": "s", "setting": "A", "seed": 0, "status": "finished", "m": 4.0},
            {"strategy": "s", "setting": "B", "seed": 0, "status": "finished", "m": 10.0},
            {"strategy": "s", "setting": "B", "seed": 1, "status": "diverged", "m": 10.0},
        ]
    )
    table = robustness(frame, "m", {"m": "max"})
    assert table.loc["s", "best_setting"] == "A" and table.loc["s", "best"] == 4.0
