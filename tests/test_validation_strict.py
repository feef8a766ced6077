"""Validation refuses before training what training would trip on, in one line and exit 2, and
plugin code cannot end the process: issue 14's classes, one test each, and random mutants."""

import json
import os
import re
import textwrap

import pytest
import yaml
from conftest import TOY_SUITE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from harness.cli import app
from harness.core.errors import SuiteError
from harness.run.loading import load_suite
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store as Tracker


def refused(path, match, **kwargs) -> str:
    """The one-line SuiteError load_suite raises for ``path``."""
    with pytest.raises(SuiteError, match=match) as info:
        load_suite(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message and str(path) in message
    return message


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_clean_refusal(result, store=None):
    """Exit 2, one line on stderr, no traceback, no store created."""
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output and "\x1b" not in result.stderr
    assert store is None or not store.exists()


# duplicate keys at any level -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key", "line"),
    [
        ("name: tiny\n", "name: tiny\nname: other\n", "name", 3),
        (
            "  bce: {loss: bce, constraint: none}\n",
            "  bce: {loss: bce}\n  bce: {loss: hinge}\n",
            "bce",
            9,
        ),
        ("n_critic: 2,", "n_critic: 2, n_critic: 3,", "n_critic", 5),
        ("{name: ring8, n: 2000}", "{name: ring8, n: 2000, n: 3}", "n", 3),
    ],
)
def test_duplicate_keys_at_any_level_are_refused(write_suite, old, new, key, line):
    path = write_suite(TOY_SUITE.replace(old, new, 1))
    message = refused(path, f"duplicate key '{key}'")
    assert f"line {line}" in message


def test_a_merge_key_may_be_overridden(write_suite):
    text = TOY_SUITE.replace(
        "eval: {every: 3, samples: 200}", "eval: {<<: {every: 3, samples: 100}, samples: 200}"
    )
    suite, _ = load_suite(write_suite(text))
    assert suite.config.eval.samples == 200


# seeds and numbers ----------------------------------------------------------------------------


def test_repeated_seeds_are_refused_in_the_suite_and_on_the_command_line(write_suite, tmp_path):
    path = write_suite(TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0, 1, 0]"))
    refused(path, "seeds must be unique: \\[0\\] repeated")
    store = tmp_path / "store"
    ok = write_suite(TOY_SUITE, "ok.yaml")
    result = cli("run", str(ok), "--seeds", "3,3", "--tracking-uri", f"sqlite:///{store}/m.db")
    assert_clean_refusal(result, store)
    assert "seeds must be unique" in result.stderr


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("steps: 6", "steps: true", "train.steps"),
        ("batch_size: 32", "batch_size: false", "train.batch_size"),
        ("z_dim: 2", "z_dim: true", "architecture.z_dim"),
        ("seeds: [0, 1]", "seeds: [0, true]", "seeds.1"),
        ("samples: 200", "samples: true", "eval.samples"),
        (
            "{loss: bce, constraint: none}",
            "{loss: bce, optimizer: {name: adam, lr: true}}",
            "strategies.bce.optimizer.lr",
        ),
        ("depth: 2", "depth: true", "architecture.depth"),
    ],
)
def test_booleans_are_not_numbers(write_suite, old, new, field):
    message = refused(write_suite(TOY_SUITE.replace(old, new)), "expected a number, got a bool")
    assert f": {field}: " in message


def test_integers_stay_valid_for_floats(write_suite):
    text = TOY_SUITE.replace(
        "{loss: bce, constraint: none}",
        "{loss: bce, constraint: {name: weight_clip, c: 1}, optimizer: {name: sgd, lr: 1}}",
    )
    suite, _ = load_suite(write_suite(text))
    assert suite.runs[-1].optimizer.lr == 1.0


# every built-in part's parameters against its real constraints --------------------------------

GP = "{loss: wasserstein, constraint: gradient_penalty}"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("width: 16", "width: -5", "architecture.width"),
        ("width: 16", "width: 0", "architecture.width"),
        ("depth: 2", "depth: -1", "architecture.depth"),
        ("n: 2000", "n: 0", "dataset.n"),
        (
            "metrics: [mode_coverage]",
            "metrics: [{name: mode_coverage, min_count: -3}]",
            "metrics.0.min_count",
        ),
        (
            "metrics: [mode_coverage]",
            "metrics: [{name: mode_coverage, class_min_share: 0}]",
            "metrics.0.class_min_share",
        ),
        (
            "metrics: [mode_coverage]",
            "metrics: [{name: transport, max_samples: 0}]",
            "metrics.0.max_samples",
        ),
        ("metrics: [mode_coverage]", "metrics: [{name: stability, tail: 0}]", "metrics.0.tail"),
        (
            "metrics: [mode_coverage]",
            "metrics: [{name: lipschitz, samples: -1}]",
            "metrics.0.samples",
        ),
        (
            GP,
            "{loss: hinge, constraint: {name: spectral_norm, n_power_iterations: 0}}",
            "strategies.wgan-gp.constraint.n_power_iterations",
        ),
        (
            GP,
            "{loss: hinge, constraint: {name: weight_clip, c: 0}}",
            "strategies.wgan-gp.constraint.c",
        ),
        (
            GP,
            "{loss: hinge, constraint: {name: gradient_penalty, weight: -1}}",
            "strategies.wgan-gp.constraint.weight",
        ),
        (
            GP,
            "{loss: hinge, constraint: {name: gradient_penalty, p: 0.5}}",
            "strategies.wgan-gp.constraint.p",
        ),
        (
            GP,
            "{loss: hinge, constraint: {name: lipschitz_penalty, weight: -1}}",
            "strategies.wgan-gp.constraint.weight",
        ),
        (
            GP,
            "{loss: hinge, constraint: {name: r1, gamma: -0.1}}",
            "strategies.wgan-gp.constraint.gamma",
        ),
        (GP, "{loss: hinge, constraint: {name: dragan, c: 0}}", "strategies.wgan-gp.constraint.c"),
        (
            GP,
            "{loss: hinge, constraint: {name: orthogonal, iterations: 0}}",
            "strategies.wgan-gp.constraint.iterations",
        ),
        (
            GP,
            "{loss: hinge, constraint: {name: orthogonal, beta: 0.6}}",
            "strategies.wgan-gp.constraint.beta",
        ),
        (
            GP,
            "{loss: hinge, constraint: {name: orthogonal, group_size: 1}}",
            "strategies.wgan-gp.constraint.group_size",
        ),
    ],
)
def test_part_parameters_are_checked_against_declared_bounds(write_suite, old, new, field):
    message = refused(write_suite(TOY_SUITE.replace(old, new)), "should be")
    assert f": {field}: " in message and ("greater than" in message or "less than" in message)


def test_an_architecture_that_cannot_take_the_data_is_refused(write_suite):
    text = TOY_SUITE.replace("name: mlp, width: 16, depth: 2", "name: dcgan28, width: 4")
    refused(write_suite(text), "architecture: .*dcgan28.*ring8.*28×28")


def test_run_builds_each_strategy_once_before_writing_anything(write_suite, tmp_path):
    text = TOY_SUITE.replace(
        "constraint: gradient_penalty}", "constraint: {name: orthogonal, group_size: 3}}"
    )  # GroupSort of 3 on 16 units fails at step 0
    store = tmp_path / "store"
    result = cli("run", str(write_suite(text)), "--tracking-uri", f"sqlite:///{store}/m.db")
    assert_clean_refusal(result, store)
    assert "strategies.wgan-gp: " in result.stderr and "GroupSort(3)" in result.stderr


NEEDS_GRAD = """
import torch
import harness
from harness.parts import Constraint


class NeedsGrad(torch.nn.Module):
    def __init__(self, critic):
        super().__init__()
        self.inner = critic

    def forward(self, x):
        x = x.requires_grad_(True)
        (grad,) = torch.autograd.grad(self.inner(x).sum(), x, create_graph=True)
        return self.inner(x) / grad.flatten(1).norm(dim=1)


class GradNorm(Constraint):
    def wrap_critic(self, critic):
        return NeedsGrad(critic)


@harness.hookimpl
def register_constraints(register):
    register("grad_norm_unsafe", GradNorm)
"""


def test_the_preflight_names_the_call_that_failed(write_suite, tmp_path, monkeypatch):
    (tmp_path / "needs_grad.py").write_text(NEEDS_GRAD)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = TOY_SUITE.replace("constraint: gradient_penalty}", "constraint: grad_norm_unsafe}")
    store = tmp_path / "store"
    result = cli(
        "run", str(write_suite(text + "plugins: [needs_grad]\n")), "--tracking-uri",
        f"sqlite:///{store}/m.db",
    )  # fmt: skip
    assert_clean_refusal(result, store)
    assert "the critic's forward pass under torch.no_grad() raised RuntimeError" in result.stderr


# data a dataset needs --------------------------------------------------------------------------

MNIST_TV = TOY_SUITE.replace(
    "dataset: {name: ring8, n: 2000}", "dataset: {name: mnist, source: torchvision}"
)


def test_data_dir_is_checked_before_training(write_suite, tmp_path):
    path = write_suite(MNIST_TV)
    refused(path, "dataset: .*needs --data-dir")
    refused(path, "MNIST not found under", data_dir=tmp_path)
    refused(path, "is not a directory", data_dir=tmp_path / "nope")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        (raw / f"{name}-ubyte").touch()
    suite, _ = load_suite(path, data_dir=tmp_path)
    assert len(suite.runs) == 4
    assert cli("validate", str(path), "--data-dir", str(tmp_path)).exit_code == 0
    store = tmp_path / "store"
    result = cli("run", str(path), "--tracking-uri", f"sqlite:///{store}/m.db")
    assert_clean_refusal(result, store)
    assert "needs --data-dir" in result.stderr


# names and paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["bad\nname", "red\x1b[31mx", "sp ace", "semi;colon", "é", "x" * 101, "a/b"]
)
def test_strategy_names_use_a_safe_character_set(write_suite, tmp_path, name):
    text = TOY_SUITE.replace("  bce: {loss", f"  {json.dumps(name)}: {{loss")
    path = write_suite(text)
    refused(path, "strategy name .*letters, digits and -_. only")
    result = cli("validate", str(path))
    assert_clean_refusal(result)


def test_profile_and_suite_names_use_a_safe_character_set(write_suite):
    refused(write_suite(TOY_SUITE + 'profiles: {"a\\nb": {seeds: [3]}}\n'), "profile name")
    refused(write_suite(TOY_SUITE.replace("name: tiny", "name: 'ti ny'")), "name: suite name")


def test_a_misspelled_key_is_named_with_a_suggestion(write_suite):
    text = TOY_SUITE.replace("strategies:", "strategys:")
    refused(write_suite(text), "strategys: unknown key 'strategys' .did you mean 'strategies'")


def test_control_characters_in_any_echoed_string_are_escaped(write_suite):
    text = TOY_SUITE.replace("{loss: bce, ", '{loss: "bc\\x1b[2Je\\nx", ')
    result = cli("validate", str(write_suite(text)))
    assert_clean_refusal(result)
    assert "\\x1b[2J" in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "huge"])
def test_the_suite_path_must_be_a_regular_file(tmp_path, kind):
    path = tmp_path / "suite.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block forever
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path = "/dev/zero"
    else:
        with open(path, "wb") as f:
            f.truncate(11 * 2**20)
    expected = {
        "fifo": "not a regular file",
        "directory": "a directory",
        "device": "not a regular file",
        "huge": "at most",
    }[kind]
    result = cli("validate", str(path))
    assert_clean_refusal(result)
    assert expected in result.stderr


# plugin code cannot take the process down ------------------------------------------------------

EXITING_CONSTRAINT = """
import sys

import harness
from harness.parts import Constraint


class ExitPenalty(Constraint):
    def penalty(self, critic, real, fake):
        sys.exit(3)


@harness.hookimpl
def register_constraints(register):
    register("exit_penalty", ExitPenalty)
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise SystemExit(0)\n", "cannot import plugin module .*SystemExit: 0"),
        ("import os\nraise SystemExit\n", "cannot import plugin module .*SystemExit"),
        ("raise GeneratorExit('x')\n", "GeneratorExit: x"),
        (
            "import harness\n@harness.hookimpl\ndef register_losses(register):\n"
            "    raise SystemExit(4)\n",
            "register_losses failed: SystemExit: 4",
        ),
    ],
)
def test_plugin_import_or_registration_exiting_is_a_one_line_error(
    tmp_path, monkeypatch, write_suite, source, expected
):
    module = f"exits_{abs(hash((source, str(tmp_path))))}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_suite(TOY_SUITE + f"plugins: [{module}]\n")
    store = tmp_path / "store"
    for command in (
        ["validate", str(path)],
        ["run", str(path), "--tracking-uri", f"sqlite:///{store}/m.db"],
    ):
        result = cli(*command)
        assert_clean_refusal(result, store)
        assert re.search(expected, result.stderr), result.stderr


SHORT = textwrap.dedent(
    """
    name: exits
    dataset: {name: ring8, n: 200}
    architecture: {name: mlp, width: 8, depth: 1, z_dim: 2}
    train: {steps: 2, batch_size: 16, n_critic: 1, log_every: 1}
    strategies:
      exits: {loss: wasserstein, constraint: exit_penalty}
      bce: {loss: bce}
    seeds: [0]
    eval: {every: 2, samples: 50}
    metrics: [mode_coverage]
    plugins: [MODULE]
    """
)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_plugin_exiting_during_training_fails_only_its_run(
    tmp_path, monkeypatch, write_suite, tracking_store, jobs
):
    module = f"exit_penalty_{jobs}"
    (tmp_path / f"{module}.py").write_text(EXITING_CONSTRAINT)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = SHORT.replace("MODULE", module).replace("name: exits", f"name: exits{jobs}")
    if jobs > 1:  # the exiting run alone, in one spawned worker (spawning is slow)
        text = text.replace("  bce: {loss: bce}\n", "")
    suite, registry = load_suite(write_suite(text))
    tracker = Tracker(tracking_store)
    outcomes = run_suite(suite, registry, tracker, RunSettings(device="cpu", jobs=jobs))
    expected = [("failed", "SystemExit: 3"), ("finished", None)][: len(suite.runs)]
    assert [(o.status, o.error) for o in outcomes] == expected
    exp = tracker.client.get_experiment_by_name(f"exits{jobs}").experiment_id
    runs = tracker.client.search_runs([exp])
    kids = {r.data.tags["strategy"]: r for r in runs if r.data.tags.get("harness.kind") == "run"}
    assert kids["exits"].data.tags["status"] == "failed" and kids["exits"].info.status == "FAILED"
    assert "bce" not in kids or kids["bce"].info.status == "FINISHED"
    artifacts = [a.path for a in tracker.client.list_artifacts(kids["exits"].info.run_id)]
    assert "traceback.txt" in artifacts
    (parent,) = [r for r in runs if r.data.tags.get("harness.kind") == "suite"]
    assert parent.info.status == "FINISHED"


INTERRUPTING_CONSTRAINT = """
import os
import signal

import harness
from harness.parts import Constraint


class Interrupts(Constraint):
    def penalty(self, critic, real, fake):
        if REAL:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
        raise KeyboardInterrupt  # plugin code pretending to be Ctrl-C


@harness.hookimpl
def register_constraints(register):
    register("exit_penalty", Interrupts)
"""


@pytest.mark.parametrize("real", [False, True])
def test_only_a_real_ctrl_c_stops_the_suite(
    tmp_path, monkeypatch, write_suite, tracking_store, real
):
    module = f"interrupting_{real}"
    (tmp_path / f"{module}.py").write_text(INTERRUPTING_CONSTRAINT.replace("REAL", str(real)))
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"interrupts{real}"
    path = write_suite(SHORT.replace("MODULE", module).replace("name: exits", f"name: {name}"))
    result = cli("run", str(path), "--tracking-uri", tracking_store, "--device", "cpu")
    tracker = Tracker(tracking_store)
    runs = tracker.client.search_runs([tracker.client.get_experiment_by_name(name).experiment_id])
    kids = {r.data.tags["strategy"]: r for r in runs if r.data.tags.get("harness.kind") == "run"}
    (parent,) = [r for r in runs if r.data.tags.get("harness.kind") == "suite"]
    if real:  # the suite stops: the run interrupted (resumable), bce never started
        assert result.exit_code == 130 and set(kids) == {"exits"}
        assert kids["exits"].data.tags["status"] == "interrupted" and parent.info.status == "KILLED"
    else:  # only that run fails
        assert result.exit_code == 1 and "failed: exits seed 0: KeyboardInterrupt" in result.stderr
        assert kids["exits"].data.tags["status"] == "failed"
        assert kids["bce"].info.status == "FINISHED" and parent.info.status == "FINISHED"


# random mutants of a valid suite ---------------------------------------------------------------

ODD = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        1,
        2,
        3,
        2.5,
        -0.5,
        float("nan"),
        float("inf"),
        10**12,
        "",
        "x",
        "1",
        "a\nb\x1b[0m",
        [],
        [1, 1],
        {},
        {"x": 1},
    ]
)
BASE = yaml.safe_load(TOY_SUITE)


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


PATHS = list(_paths(BASE))
LINES = TOY_SUITE.strip("\n").splitlines()


@st.composite
def mutants(draw) -> str:
    """A suite text with one to three random edits: keys deleted, values replaced by odd
    values, lines duplicated (repeated keys), removed or shuffled."""
    suite = yaml.safe_load(TOY_SUITE)
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["delete", "replace", "duplicate", "drop_line", "swap"]))
        if op in ("delete", "replace"):
            *parents, last = draw(st.sampled_from(PATHS))
            node = suite
            for key in parents:
                node = node[key] if isinstance(node, dict | list) and _has(node, key) else None
            if not isinstance(node, dict | list) or not _has(node, last):
                continue
            if op == "delete":
                del node[last]
            else:
                node[last] = draw(ODD)
            lines = yaml.safe_dump(suite, allow_unicode=True, width=1000).splitlines()
        else:
            i = draw(st.integers(0, len(lines) - 1))
            if op == "duplicate":
                lines.insert(i, lines[i])
            elif op == "drop_line":
                del lines[i]
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            suite = None  # the text is the truth now
    return "\n".join(lines) + "\n"


def _has(node, key) -> bool:
    return key in node if isinstance(node, dict) else isinstance(key, int) and key < len(node)


ACCEPTED: list[str] = []
MAX_RUNS = 2


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=mutants())
def test_mutants_are_refused_cleanly_or_valid(tmp_path, tracking_store, text):
    path = tmp_path / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        suite, registry = load_suite(path)
    except SuiteError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        store = tmp_path / "store"
        result = cli("run", str(path), "--tracking-uri", f"sqlite:///{store}/m.db")
        assert_clean_refusal(result, store)
        return
    for spec in suite.runs:  # accepted: every resolved value is sane
        assert spec.train.steps >= 1 and spec.train.batch_size >= 1 and spec.eval.samples >= 1
        assert not isinstance(spec.train.steps, bool) and not isinstance(spec.seed, bool)
    assert len({(r.strategy, r.seed) for r in suite.runs}) == len(suite.runs)
    if len(ACCEPTED) < MAX_RUNS and text not in ACCEPTED:  # a few really train, 2 steps each
        ACCEPTED.append(text)
        short = yaml.safe_load(text)
        short["name"] = f"mutant{len(ACCEPTED)}"
        short["train"] = {**short["train"], "steps": min(short["train"]["steps"], 2)}
        short["seeds"] = short.get("seeds", [0])[:1]
        path.write_text(yaml.safe_dump(short))
        suite, registry = load_suite(path)
        outcomes = run_suite(suite, registry, Tracker(tracking_store), RunSettings(device="cpu"))
        assert {o.status for o in outcomes} <= {"finished", "diverged"}
