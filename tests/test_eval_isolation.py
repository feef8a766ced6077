"""Evaluation never changes what trains: metrics may draw random numbers (a third party's
may), the evaluator loads once per process, and ``eval.every`` decides when metrics run; the
training streams go on as if none of it had happened."""

import pytest
import torch
from conftest import TOY_SUITE

from harness.run import trainer
from harness.run.loading import load_suite

NOISY = '''
import random

import numpy as np
import torch

from harness.core.hookspecs import hookimpl
from harness.core.parts import Metric


class Noisy(Metric):
    """Draws from every global stream, when built and at each evaluation."""

    directions = {"noise": "max"}

    def __init__(self):
        torch.rand(7), np.random.rand(3), random.random()

    def evaluate(self, ctx):
        return {"noise": float(torch.rand(1000).sum() + np.random.rand() + random.random())}


@hookimpl
def register_metrics(register):
    register("noisy", Noisy)
'''


class Final(trainer.MetricsSink):
    def save_checkpoint(self, state):
        self.state = state


def final_generator(path, strategy="wgan-gp"):
    suite, registry = load_suite(path)
    spec = next(r for r in suite.runs if r.strategy == strategy and r.seed == 0)
    sink = Final()
    trainer.train(spec, registry=registry, device="cpu", sink=sink)
    return sink.state["generator"]


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def noisy_suite(tmp_path, monkeypatch):
    """TOY_SUITE with the noisy metric beside mode coverage."""
    (tmp_path / "noisy_metric.py").write_text(NOISY)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = TOY_SUITE.replace("metrics: [mode_coverage]", "metrics: [mode_coverage, noisy]")
    return text + "plugins: [noisy_metric]\n"


def test_a_metric_drawing_random_numbers_changes_nothing_that_trains(write_suite, noisy_suite):
    plain = final_generator(write_suite(TOY_SUITE, "plain.yaml"))
    assert same(plain, final_generator(write_suite(noisy_suite, "noisy.yaml")))


def test_how_often_it_evaluates_changes_nothing_that_trains(write_suite, noisy_suite):
    every = {n: noisy_suite.replace("eval: {every: 3,", f"eval: {{every: {n},") for n in (1, 6)}
    assert "every: 1," in every[1] and "every: 6," in every[6]
    first, second = (final_generator(write_suite(t, f"e{n}.yaml")) for n, t in every.items())
    assert same(first, second)


def test_loading_the_evaluation_context_leaves_the_seed_where_it_was(write_suite, monkeypatch):
    """The evaluator's network is built once per process (random init, then its weights):
    the first run of a process must start from the same networks as the later ones."""
    path = write_suite(TOY_SUITE)
    plain = final_generator(path)
    opened = trainer.open_context

    def drawing(*args, **kwargs):
        torch.rand(100)  # what building an evaluator network draws
        return opened(*args, **kwargs)

    monkeypatch.setattr(trainer, "open_context", drawing)
    assert same(plain, final_generator(path))
