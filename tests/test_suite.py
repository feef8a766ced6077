import pytest
from conftest import TOY_SUITE

from harness.core.errors import SuiteError
from harness.run.loading import load_suite


def test_toy_suite_resolves_to_strategy_times_seed_runs(write_suite):
    suite, _ = load_suite(write_suite(TOY_SUITE))
    assert [(r.strategy, r.seed) for r in suite.runs] == [
        ("wgan-gp", 0),
        ("wgan-gp", 1),
        ("bce", 0),
        ("bce", 1),
    ]
    gp = suite.runs[0]
    assert (
        gp.optimizer.name == "adam" and gp.optimizer.lr == 1e-4 and gp.optimizer.betas == (0, 0.9)
    )
    assert suite.runs[2].optimizer.betas == (0.5, 0.999)
    assert gp.architecture.z_dim == 2 and gp.architecture.params == {"width": 16, "depth": 2}


def test_run_keys_are_stable_and_config_sensitive(write_suite):
    a, _ = load_suite(write_suite(TOY_SUITE))
    b, _ = load_suite(write_suite(TOY_SUITE))
    assert [r.run_key for r in a.runs] == [r.run_key for r in b.runs]
    assert len({r.run_key for r in a.runs}) == 4
    c, _ = load_suite(write_suite(TOY_SUITE.replace("steps: 6", "steps: 7")))
    assert not {r.run_key for r in a.runs} & {r.run_key for r in c.runs}


def test_profile_merges_deeply_and_seeds_override(write_suite):
    path = write_suite(TOY_SUITE + "profiles:\n  quick: {train: {steps: 2}, seeds: [5]}\n")
    suite, _ = load_suite(path, profile="quick")
    assert suite.runs[0].train.steps == 2 and suite.runs[0].train.batch_size == 32
    assert {r.seed for r in suite.runs} == {5}
    suite, _ = load_suite(path, seeds=[7, 8])
    assert {r.seed for r in suite.runs} == {7, 8}


def test_strategy_overrides_optimizer_and_n_critic(write_suite):
    text = TOY_SUITE.replace(
        "bce: {loss: bce, constraint: none}",
        "bce: {loss: bce, n_critic: 1, optimizer: {name: sgd, lr: 0.1}}",
    )
    suite, _ = load_suite(write_suite(text))
    bce = [r for r in suite.runs if r.strategy == "bce"][0]
    assert bce.train.n_critic == 1 and bce.optimizer.name == "sgd"
    assert bce.constraint.name == "none"


BAD = [
    ("name: [unclosed\n", "line 2", "invalid YAML"),
    ("- a list\n", None, "must be a YAML mapping"),
    (
        TOY_SUITE.replace("loss: wasserstein", "loss: wasserstien"),
        "strategies.wgan-gp.loss",
        "did you mean 'wasserstein'",
    ),
    (
        TOY_SUITE.replace(
            "constraint: gradient_penalty", "constraint: {name: gradient_penalty, wieght: 5}"
        ),
        "strategies.wgan-gp.constraint.wieght",
        "did you mean 'weight'",
    ),
    (TOY_SUITE.replace("steps: 6", "steps: many"), "train.steps", "valid integer"),
    (TOY_SUITE.replace("steps: 6", "steps: -3"), "train.steps", "greater than 0"),
    (TOY_SUITE.replace("n_critic: 2", "n_critic: 2, extra: 1"), "train.extra", "not permitted"),
    (TOY_SUITE.replace("name: ring8", "name: ring9"), "dataset", "did you mean 'ring8'"),
    (
        TOY_SUITE.replace("name: ring8, n: 2000", "name: ring8, n: lots"),
        "dataset.n",
        "valid integer",
    ),
    (
        TOY_SUITE.replace("metrics: [mode_coverage]", "metrics: [mode_coverag]"),
        "metrics.0",
        "did you mean 'mode_coverage'",
    ),
    (TOY_SUITE.replace("seeds: [0, 1]", "seeds: []"), "seeds", "at least 1"),
    (TOY_SUITE.replace("name: tiny", "name: 'a b/c'"), "name", "letters, digits and -_. only"),
    (TOY_SUITE + "plugins: [no_such_plugin_module]\n", None, "cannot import plugin module"),
]


@pytest.mark.parametrize(("text", "field", "message"), BAD)
def test_bad_suites_name_file_and_field(write_suite, text, field, message):
    path = write_suite(text)
    with pytest.raises(SuiteError) as exc:
        load_suite(path)
    assert exc.value.file == str(path)
    assert exc.value.field == field
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_file_and_unknown_profile(write_suite, tmp_path):
    with pytest.raises(SuiteError, match="no such file"):
        load_suite(tmp_path / "nope.yaml")
    path = write_suite(TOY_SUITE + "profiles:\n  smoke: {seeds: [1]}\n")
    with pytest.raises(SuiteError, match="unknown profile 'smok'.*did you mean 'smoke'"):
        load_suite(path, profile="smok")


@pytest.mark.parametrize("name", ["toy_modes", "mnist_modes"])
@pytest.mark.parametrize("profile", [None, "smoke", "full"])
def test_shipped_suites_validate(name, profile, mnist_dir):
    suite, _ = load_suite(f"suites/{name}.yaml", profile=profile, data_dir=mnist_dir)
    strategies = {r.strategy for r in suite.runs}
    assert {"bce", "wgan-clip", "wgan-gp", "wgan-sn"} <= strategies
    if profile is None:  # the defaults: enough seeds for the verdict rule
        assert len({r.seed for r in suite.runs}) == {"toy_modes": 5, "mnist_modes": 3}[name]
