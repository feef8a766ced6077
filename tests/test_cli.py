import textwrap

import pytest
from conftest import TOY_SUITE
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from harness.cli import app
from harness.run.loading import load_suite
from harness.run.trainer import MetricsSink, train

runner = CliRunner()


def harness(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def store(tmp_path):
    (tmp_path / "store").mkdir()  # harness run makes a store, not the folders of its path
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def child_runs(uri, experiment):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    kids = [r for r in runs if r.data.tags.get("harness.kind") == "run"]
    parents = [r for r in runs if r.data.tags.get("harness.kind") == "suite"]
    return client, parents, kids


@pytest.mark.parametrize(
    ("suite", "experiment", "coverage_key"),
    [
        ("suites/toy_modes.yaml", "toy_modes", "hq_fraction"),
        ("suites/mnist_modes.yaml", "mnist_modes", "kl_to_uniform"),
    ],
)
def test_smoke_profile_end_to_end_into_mlflow(store, suite, experiment, coverage_key):
    result = harness("run", suite, "--profile", "smoke", "--tracking-uri", store)
    assert result.exit_code == 0, result.output
    assert "mean ± std over seeds" in result.stdout and "wgan-gp" in result.stdout
    client, parents, kids = child_runs(store, experiment)
    assert len(parents) == 1 and len(kids) == 4
    parent = parents[0]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {
        "suite.yaml",
        "resolved.json",
    }
    for kid in kids:
        tags = kid.data.tags
        assert tags["status"] == "finished" and kid.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"strategy", "seed", "run_key"} <= set(tags)
        assert kid.data.params["strategy"] == tags["strategy"]
        assert "modes_covered" in kid.data.metrics and coverage_key in kid.data.metrics
        history = client.get_metric_history(kid.info.run_id, "loss_critic")
        assert len(history) >= 2 and len({m.step for m in history}) == len(history)
        assert client.list_artifacts(kid.info.run_id, "samples")
    if experiment == "mnist_modes":
        assert all(k.data.metrics["evaluator_test_accuracy"] >= 0.97 for k in kids)

    again = harness("run", suite, "--profile", "smoke", "--tracking-uri", store)
    assert again.exit_code == 0, again.output
    assert again.stdout.count("already finished") == 4
    _, parents, kids = child_runs(store, experiment)
    assert len(parents) == 1 and len(kids) == 4  # an invocation that trains nothing leaves no run


BROKEN_PLUGIN = '''
import harness
import torch
from harness.parts import Loss
from harness.builtins.losses import Wasserstein


class Exploding(Wasserstein):
    """Returns NaN: the run must be recorded as diverged."""

    def critic_loss(self, real_out, fake_out):
        return super().critic_loss(real_out, fake_out) * torch.tensor(float("nan"))


class Raising(Wasserstein):
    """Raises: the run must be recorded as failed."""

    def generator_loss(self, fake_out):
        raise RuntimeError("plugin bug")


@harness.hookimpl
def register_losses(register):
    register("exploding", Exploding)
    register("raising", Raising)
'''


def test_diverged_and_failed_runs_are_recorded_and_the_suite_goes_on(
    tmp_path, monkeypatch, write_suite, store
):
    (tmp_path / "broken_losses.py").write_text(BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0]") + textwrap.dedent(
        """
        plugins: [broken_losses]
        """
    )
    text = text.replace(
        "bce: {loss: bce, constraint: none}",
        "boom: {loss: exploding}\n  bug: {loss: raising}\n  bce: {loss: bce}",
    )
    result = harness("run", write_suite(text), "--tracking-uri", store)
    assert result.exit_code == 1
    assert "failed: bug seed 0: RuntimeError: plugin bug" in result.stderr
    client, _, kids = child_runs(store, "tiny")
    status = {k.data.tags["strategy"]: k for k in kids}
    assert {s: k.data.tags["status"] for s, k in status.items()} == {
        "wgan-gp": "finished",
        "boom": "diverged",
        "bug": "failed",
        "bce": "finished",
    }
    assert status["boom"].data.metrics["diverged"] == 1.0
    assert status["bug"].info.status == "FAILED"
    assert [a.path for a in client.list_artifacts(status["bug"].info.run_id)] == ["traceback.txt"]


class Collect(MetricsSink):
    def __init__(self):
        self.logged = []

    def log(self, values, step):
        volatile = {"eval_seconds", "train_seconds", "sec_per_step"}
        self.logged.append((step, {k: v for k, v in values.items() if k not in volatile}))


def test_training_is_deterministic_on_cpu(write_suite):
    suite, registry = load_suite(write_suite(TOY_SUITE))
    runs = [Collect() for _ in range(3)]
    for sink, spec in zip(runs, [suite.runs[0], suite.runs[0], suite.runs[1]], strict=True):
        train(spec, registry=registry, device="cpu", sink=sink)
    assert runs[0].logged == runs[1].logged
    assert len(runs[0].logged) >= 4
    assert runs[0].logged != runs[2].logged  # another seed, another run


BAD_CASES = {
    "missing file": (None, "no such file"),
    "yaml syntax": ("name: [oops\n", "invalid YAML"),
    "unknown plugin": (
        TOY_SUITE.replace("constraint: gradient_penalty", "constraint: gradient_penalti"),
        "did you mean 'gradient_penalty'",
    ),
    "unknown parameter": (TOY_SUITE.replace("depth: 2", "dept: 2"), "did you mean 'depth'"),
    "wrong type": (TOY_SUITE.replace("batch_size: 32", "batch_size: [32]"), "train.batch_size"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, write_suite, case, command):
    text, message = BAD_CASES[case]
    path = tmp_path / "absent.yaml" if text is None else write_suite(text)
    store_dir = tmp_path / "store"
    extra = ["--tracking-uri", f"sqlite:///{store_dir / 'mlflow.db'}"] if command == "run" else []
    result = harness(command, path, *extra)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and message in lines[0]
    assert "Traceback" not in result.output
    assert not store_dir.exists()


def test_bad_seeds_option(tmp_path):
    result = harness("run", "suites/toy_modes.yaml", "--seeds", "a,b")
    assert result.exit_code == 2 and "--seeds" in result.stderr


@pytest.mark.parametrize("uri", ["http://127.0.0.1:1", "postgresql://nobody@127.0.0.1:1/x"])
def test_unreachable_tracking_server_is_one_line(uri):
    result = harness(
        "run",
        "suites/toy_modes.yaml",
        "-p",
        "smoke",
        "--tracking-uri",
        "postgresql://nobody@127.0.0.1:1/x",
    )
    assert result.exit_code == 2
    assert "unreachable" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_list_shows_every_part_with_parameters_and_source():
    result = harness("list")
    assert result.exit_code == 0
    for name in (
        "bce_minimax",
        "weight_clip",
        "gradient_penalty",
        "spectral_norm",
        "dcgan28",
        "grid25",
    ):
        assert name in result.stdout
    assert (
        "c=0.01" in result.stdout and "weight=10.0" in result.stdout and "harness" in result.stdout
    )
    only = harness("list", "--kind", "loss")
    assert "hinge" in only.stdout and "ring8" not in only.stdout
    assert harness("list", "--kind", "losses").exit_code == 2


def test_validate_prints_the_resolved_strategies():
    result = harness("validate", "suites/mnist_modes.yaml", "--profile", "smoke")
    assert result.exit_code == 0
    assert "4 strategies × 1 seeds = 4 runs" in result.stdout
    assert "rmsprop lr 5e-05" in result.stdout and "imports: no suite-local" in result.stdout


def test_validate_checks_every_profile_and_names_the_broken_one(write_suite, mnist_dir):
    text = TOY_SUITE + "profiles:\n  quick: {train: {steps: 2}}\n  broken: {train: {stepz: 2}}\n"
    result = harness("validate", write_suite(text))
    assert result.exit_code == 2
    assert "train.stepz: Extra inputs are not permitted (profile 'broken')" in result.stderr
    ok = harness("validate", write_suite(text.replace("stepz", "steps"), "ok.yaml"))
    assert ok.exit_code == 0, ok.output
    assert "profile quick: ok — 4 runs of 2 steps" in ok.stdout
    # a profile whose data lives elsewhere is valid here, and checked once --data-dir is given
    mnist = harness("validate", "suites/mnist_modes.yaml")
    assert mnist.exit_code == 0 and "profile full: valid; its data is not here" in mnist.stdout
    elsewhere = harness("validate", "suites/mnist_modes.yaml", "--data-dir", str(mnist_dir.parent))
    assert elsewhere.exit_code == 2 and "(profile 'full')" in elsewhere.stderr
    assert (
        harness("validate", "suites/mnist_modes.yaml", "--data-dir", str(mnist_dir)).exit_code == 0
    )
