"""Update schedules: ``train.generator_steps`` generator updates per step, and simultaneous
updates (PacGAN's code), honoured by the loop and part of the run key only when not default."""

import contextlib
import copy
import math

import pytest
import torch
from conftest import TOY_SUITE

from harness.core.errors import SuiteError
from harness.run.loading import load_suite
from harness.run.trainer import MetricsSink, joint_step, load_parts, seed_everything, train


class Checkpoints(MetricsSink):
    def __init__(self):
        self.logged = {}

    def log(self, values, step):
        self.logged.update(values)

    def save_checkpoint(self, state):
        self.state = state


def one_seed(write_suite, **train):
    extra = ", ".join(f"{k}: {v}" for k, v in train.items())
    text = TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0]")
    text = text.replace("log_every: 3}", f"log_every: 3, {extra}}}" if extra else "log_every: 3}")
    return load_suite(write_suite(text))


def adam_steps(optimizer_state: dict) -> int:
    return int(optimizer_state["state"][0]["step"])


@pytest.mark.parametrize(
    ("generator_steps", "updates"), [(1, "alternating"), (2, "alternating"), (2, "simultaneous")]
)
def test_each_step_takes_n_critic_critic_and_generator_steps_generator_updates(
    write_suite, generator_steps, updates
):
    suite, registry = one_seed(write_suite, generator_steps=generator_steps, updates=updates)
    sink = Checkpoints()
    train(suite.runs[0], registry=registry, device="cpu", sink=sink)  # 6 steps, n_critic 2
    assert adam_steps(sink.state["opt_g"]) == 6 * generator_steps
    assert adam_steps(sink.state["opt_c"]) == 6 * 2


def test_the_default_schedule_keeps_the_run_key_and_another_changes_it(write_suite):
    plain = one_seed(write_suite)[0].runs[0]
    assert one_seed(write_suite, generator_steps=1, updates="alternating")[0].runs[0].run_key == (
        plain.run_key
    )
    assert one_seed(write_suite, generator_steps=2)[0].runs[0].run_key != plain.run_key
    assert one_seed(write_suite, updates="simultaneous")[0].runs[0].run_key != plain.run_key


def test_a_strategy_may_set_its_own_schedule(write_suite):
    text = TOY_SUITE.replace(
        "bce: {loss: bce, constraint: none}",
        "bce: {loss: bce, constraint: none, generator_steps: 2, updates: simultaneous}",
    )
    suite, _ = load_suite(write_suite(text))
    trains = {run.strategy: run.train for run in suite.runs}
    assert (trains["bce"].generator_steps, trains["bce"].updates) == (2, "simultaneous")
    assert (trains["wgan-gp"].generator_steps, trains["wgan-gp"].updates) == (1, "alternating")


@pytest.mark.parametrize(("field", "value"), [("generator_steps", -1), ("updates", "simultanous")])
def test_a_bad_schedule_is_one_error_naming_the_field(write_suite, field, value):
    with pytest.raises(SuiteError) as error:
        one_seed(write_suite, **{field: value})
    assert f"train.{field}" in str(error.value)


def test_a_simultaneous_update_takes_both_gradients_at_the_same_weights(write_suite):
    """With SGD, each network moves by lr × its gradient at the weights before the step: the
    generator's through the critic as it was, not as the critic update left it."""
    text = TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0]").replace(
        "metrics: [mode_coverage]", "metrics: [mode_coverage]\noptimizer: {name: sgd, lr: 0.1}"
    )
    suite, registry = load_suite(write_suite(text))
    spec = suite.runs[1]  # bce, no constraint
    parts = load_parts(spec, registry, torch.device("cpu"), None)
    gen0, crit0 = copy.deepcopy(parts.generator), copy.deepcopy(parts.critic)
    seed_everything(7)
    joint_step(parts, parts.generator, parts.critic, contextlib.nullcontext(), 32)
    seed_everything(7)
    real = parts.data[torch.randint(0, len(parts.data), (32,))]
    fake = gen0(torch.randn(32, parts.z_dim))
    loss_c = parts.loss.critic_loss(crit0(real), crit0(fake.detach()))
    loss_g = parts.loss.generator_loss(crit0(fake))
    for before, after, loss in ((crit0, parts.critic, loss_c), (gen0, parts.generator, loss_g)):
        grads = torch.autograd.grad(loss, list(before.parameters()), retain_graph=True)
        for p0, p1, g in zip(before.parameters(), after.parameters(), grads, strict=True):
            torch.testing.assert_close(p1.detach(), p0.detach() - 0.1 * g)


def test_zero_generator_steps_hold_the_generator_fixed_while_the_critic_trains(write_suite):
    """WGAN-GP's Figure 1a: the critic trained against a fixed generator."""
    suite, registry = one_seed(write_suite, generator_steps=0)
    spec = suite.runs[0]
    seed_everything(spec.seed)  # as train does, so the networks start the same
    initial = load_parts(spec, registry, torch.device("cpu"), None)
    sink = Checkpoints()
    result = train(spec, registry=registry, device="cpu", sink=sink)
    assert result.status == "finished" and adam_steps(sink.state["opt_c"]) == 6 * 2
    assert sink.state["opt_g"]["state"] == {}  # never stepped
    for name, value in initial.generator.state_dict().items():
        torch.testing.assert_close(sink.state["generator"][name], value, rtol=0, atol=0)
    assert sink.logged["grad_norm_generator"] == 0.0
    assert math.isfinite(sink.logged["loss_generator"])


def test_a_fixed_generator_cannot_be_updated_simultaneously(write_suite):
    with pytest.raises(SuiteError, match="generator_steps 0 holds the generator fixed") as error:
        one_seed(write_suite, generator_steps=0, updates="simultaneous")
    assert error.value.field == "train.updates"
