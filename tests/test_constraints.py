import math

import pytest
import torch
from conftest import TOY_SUITE
from torch import nn

from harness.builtins.architectures import DCGAN28, MLP
from harness.builtins.constraints import (
    R1,
    Dragan,
    GradientPenalty,
    LipschitzPenalty,
    NoConstraint,
    SpectralNorm,
    WeightClip,
)
from harness.builtins.orthogonal import Orthogonal
from harness.core.errors import SuiteError
from harness.registry import Registry
from harness.run.loading import load_suite
from harness.run.trainer import train


def linear_critic(a: list[float]) -> nn.Linear:
    critic = nn.Linear(len(a), 1, bias=True)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([a]))
        critic.bias.fill_(0.7)
    return critic


@pytest.mark.parametrize("a", [[3.0, 4.0], [0.6, 0.0], [1.0, 0.0]])
@pytest.mark.parametrize("weight", [10.0, 2.5])
def test_gradient_penalty_on_linear_critic(a, weight):
    critic = linear_critic(a)
    real, fake = torch.randn(64, 2), torch.randn(64, 2)
    norm = torch.tensor(a).norm().item()
    penalty = GradientPenalty(weight=weight).penalty(critic, real, fake)
    assert penalty.item() == pytest.approx(weight * (norm - 1) ** 2, rel=1e-5, abs=1e-6)


def test_gradient_penalty_center():
    critic = linear_critic([3.0, 4.0])
    penalty = GradientPenalty(weight=1.0, center=0.0).penalty(
        critic, torch.ones(8, 2), torch.zeros(8, 2)
    )
    assert penalty.item() == pytest.approx(25.0)


def test_gradient_penalty_backpropagates_into_critic():
    critic = linear_critic([3.0, 4.0])
    GradientPenalty().penalty(critic, torch.randn(8, 2), torch.randn(8, 2)).backward()
    # d/da 10 (|a| - 1)^2 = 20 (|a| - 1) a / |a| = 20 * 4 * (0.6, 0.8)
    assert torch.allclose(critic.weight.grad, torch.tensor([[48.0, 64.0]]), rtol=1e-4)


def test_gradient_penalty_interpolates_between_real_and_fake():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(x.detach())
            return x.sum(1)

    real, fake = torch.zeros(1000, 1), torch.ones(1000, 1)
    GradientPenalty().penalty(Probe(), real, fake)
    x_hat = seen[0]
    assert x_hat.min() >= 0 and x_hat.max() <= 1
    assert x_hat.std() > 0.2  # eps ~ U(0,1) per sample: std 1/sqrt(12) ≈ 0.29


def test_weight_clip_keeps_weights_in_range():
    _, critic = MLP(width=32, depth=2).build(2, (2,), "score")
    with torch.no_grad():
        for p in critic.parameters():
            p.normal_(0, 1)
    inside = torch.tensor([0.005, -0.003])
    critic.body[1][0].bias.data[:2] = inside
    WeightClip(c=0.01).after_critic_step(critic)
    for p in critic.parameters():
        assert p.abs().max().item() <= 0.01
    assert torch.equal(critic.body[1][0].bias.data[:2], inside)
    assert any((p.abs() == 0.01).any() for p in critic.parameters())


def test_weight_clip_rejects_bad_c():
    with pytest.raises(ValueError):
        WeightClip(c=0)


def test_spectral_norm_gives_unit_sigma():
    _, critic = DCGAN28(width=4).build(16, (1, 28, 28), "score")
    critic = SpectralNorm().wrap_critic(critic)
    for _ in range(30):  # power iteration advances once per training-mode forward
        critic(torch.randn(2, 1, 28, 28))
    layers = [m for m in critic.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert len(layers) == 4
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.02)


def test_no_constraint_is_a_no_op():
    _, critic = MLP(width=8, depth=1).build(2, (2,), "score")
    before = [p.clone() for p in critic.parameters()]
    c = NoConstraint()
    assert c.wrap_critic(critic) is critic
    assert c.penalty(critic, torch.randn(4, 2), torch.randn(4, 2)) is None
    c.after_critic_step(critic)
    assert all(torch.equal(a, b) for a, b in zip(before, critic.parameters(), strict=True))


def test_default_optimizers_follow_the_papers():
    assert WeightClip.default_optimizer == {"name": "rmsprop", "lr": 5e-5}
    assert GradientPenalty.default_optimizer == {"name": "adam", "lr": 1e-4, "betas": (0.0, 0.9)}
    assert SpectralNorm.default_optimizer["lr"] == 2e-4
    assert NoConstraint.default_optimizer["betas"] == (0.5, 0.999)


class Probe(nn.Module):
    """f(x) = ½‖x‖² (∇f(x) = x), remembering every input it sees."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach())
        return 0.5 * x.flatten(1).pow(2).sum(1)


@pytest.mark.parametrize(
    ("p", "norm"), [(1.0, 7.0), (2.0, 5.0), (3.0, 91 ** (1 / 3)), (math.inf, 4.0)]
)
def test_gradient_penalty_p_norm_on_linear_critic(p, norm):
    critic = linear_critic([3.0, -4.0])
    penalty = GradientPenalty(weight=2.0, center=1.0, p=p).penalty(
        critic, torch.randn(16, 2), torch.randn(16, 2)
    )
    assert penalty.item() == pytest.approx(2.0 * (norm - 1) ** 2, rel=1e-5)


@pytest.mark.parametrize(
    ("a", "expected"), [([3.0, 4.0], 160.0), ([0.6, 0.0], 0.0), ([1.0, 0.0], 0.0)]
)
def test_lipschitz_penalty_on_linear_critic(a, expected):
    critic = linear_critic(a)
    penalty = LipschitzPenalty(weight=10.0).penalty(critic, torch.randn(32, 2), torch.randn(32, 2))
    assert penalty.item() == pytest.approx(expected, abs=1e-5)


def test_lipschitz_penalty_is_one_sided_where_gradient_penalty_is_not():
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    flat, gp = linear_critic([0.6, 0.0]), linear_critic([0.6, 0.0])
    LipschitzPenalty().penalty(flat, real, fake).backward()
    GradientPenalty().penalty(gp, real, fake).backward()
    assert torch.equal(flat.weight.grad, torch.zeros(1, 2))
    # d/da 10 (|a| - 1)^2 at a = (0.6, 0) is 20 (0.6 - 1) = -8: GP pushes |a| up to 1
    assert torch.allclose(gp.weight.grad, torch.tensor([[-8.0, 0.0]]))
    steep = linear_critic([3.0, 4.0])
    LipschitzPenalty().penalty(steep, real, fake).backward()
    assert torch.allclose(steep.weight.grad, torch.tensor([[48.0, 64.0]]), rtol=1e-4)


@pytest.mark.parametrize("gamma", [10.0, 1.0])
def test_r1_on_linear_critic(gamma):
    critic = linear_critic([3.0, 4.0])
    penalty = R1(gamma=gamma).penalty(critic, torch.randn(16, 2), torch.randn(16, 2))
    assert penalty.item() == pytest.approx(gamma / 2 * 25, rel=1e-6)
    penalty.backward()  # d/da γ/2 |a|² = γ a
    assert torch.allclose(critic.weight.grad, gamma * torch.tensor([[3.0, 4.0]]))


def test_r1_looks_at_real_data_only():
    probe, real = Probe(), torch.full((8, 2), 3.0)
    fake = torch.full((8, 2), math.nan)  # never touched
    penalty = R1(gamma=10.0).penalty(probe, real, fake)
    assert penalty.item() == pytest.approx(5 * 18)  # γ/2 · E‖x‖², ‖(3, 3)‖² = 18
    assert len(probe.seen) == 1 and torch.equal(probe.seen[0], real)


@pytest.mark.parametrize(
    ("a", "weight"), [([3.0, 4.0], 10.0), ([0.6, 0.0], 10.0), ([1.0, 0.0], 3.0)]
)
def test_dragan_on_linear_critic(a, weight):
    critic = linear_critic(a)
    penalty = Dragan(weight=weight).penalty(critic, torch.randn(16, 2), torch.randn(16, 2))
    norm = torch.tensor(a).norm().item()
    assert penalty.item() == pytest.approx(weight * (norm - 1) ** 2, rel=1e-5, abs=1e-6)


def test_dragan_perturbs_real_data_upwards_by_at_most_c_std():
    probe = Probe()
    real = torch.randn(4000, 2) * torch.tensor([1.0, 3.0])
    Dragan(c=0.5).penalty(probe, real, torch.full_like(real, math.nan))
    shift, bound = probe.seen[0] - real, 0.5 * real.std()
    assert shift.min() >= 0 and shift.max() <= bound
    assert shift.mean().item() == pytest.approx(bound.item() / 4, rel=0.05)  # E[α]·E[u] = 1/4
    per_sample = shift.max(1).values / bound  # α·u: some samples barely move, some almost fully
    assert per_sample.min() < 0.05 and per_sample.max() > 0.9


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (GradientPenalty, {"p": 0.5}),
        (GradientPenalty, {"p": math.nan}),
        (GradientPenalty, {"weight": -1.0}),
        (GradientPenalty, {"center": math.inf}),
        (LipschitzPenalty, {"weight": math.nan}),
        (R1, {"gamma": -0.1}),
        (Dragan, {"c": 0.0}),
        (Dragan, {"weight": math.inf}),
        (Orthogonal, {"beta": 0.6}),
        (Orthogonal, {"iterations": 0}),
        (Orthogonal, {"group_size": 1}),
    ],
)
def test_new_constraint_parameters_are_checked(cls, params):
    with pytest.raises(ValueError):
        cls(**params)


def test_bad_constraint_parameter_is_a_suite_error_naming_the_field():
    with pytest.raises(SuiteError) as info:
        Registry().create("constraint", "gradient_penalty", {"p": 0.5}, field="strategies.x")
    assert "greater than or equal to 1 (got 0.5)" in str(info.value)  # the declared bound
    assert info.value.field == "strategies.x.p"


def test_new_default_optimizers_follow_the_papers():
    assert LipschitzPenalty.default_optimizer == GradientPenalty.default_optimizer
    assert R1.default_optimizer == {"name": "rmsprop", "lr": 1e-4}
    assert Dragan.default_optimizer == {"name": "adam", "lr": 1e-4, "betas": (0.5, 0.9)}
    assert Orthogonal.default_optimizer == {"name": "adam", "lr": 2e-4, "betas": (0.5, 0.999)}


NEW_STRATEGIES = """\
  wgan-lp: {loss: wasserstein, constraint: lipschitz_penalty}
  wgan-gp-l1: {loss: wasserstein, constraint: {name: gradient_penalty, p: 1}}
  r1: {loss: bce, constraint: r1, n_critic: 1}
  dragan: {loss: bce, constraint: dragan, n_critic: 1}
  wgan-orth: {loss: wasserstein, constraint: orthogonal}
"""


def test_new_strategies_train_without_nan(write_suite):
    old = "  wgan-gp: {loss: wasserstein, constraint: gradient_penalty}\n"
    old += "  bce: {loss: bce, constraint: none}\n"
    assert old in TOY_SUITE
    text = (
        TOY_SUITE.replace(old, NEW_STRATEGIES)
        .replace("seeds: [0, 1]", "seeds: [0]")
        .replace("steps: 6,", "steps: 4,")
        .replace("every: 3,", "every: 4,")
        .replace("metrics: [mode_coverage]", "metrics: [{name: lipschitz, samples: 64}]")
    )
    suite, registry = load_suite(write_suite(text))
    assert [r.strategy for r in suite.runs] == [
        "wgan-lp",
        "wgan-gp-l1",
        "r1",
        "dragan",
        "wgan-orth",
    ]
    for spec in suite.runs:
        result = train(spec, registry=registry, device="cpu")
        assert result.status == "finished" and result.steps == 4, spec.strategy
        assert all(math.isfinite(v) for v in result.metrics.values()), spec.strategy
    assert result.metrics["lipschitz_upper_bound"] <= 1 + 1e-5  # wgan-orth, certified
    assert result.metrics["lipschitz_lower_bound"] <= 1 + 1e-5


@pytest.mark.parametrize("suite", ["suites/toy_modes.yaml", "suites/mnist_modes.yaml"])
def test_full_profiles_add_the_new_strategies(suite, mnist_dir):
    new = {"lipschitz_penalty", "r1", "dragan", "orthogonal"}
    base, _ = load_suite(suite)
    full, _ = load_suite(suite, profile="full", data_dir=mnist_dir)
    base_constraints = {s.constraint.name for s in base.config.strategies.values()}
    full_constraints = {s.constraint.name for s in full.config.strategies.values()}
    assert not new & base_constraints and new <= full_constraints
    assert set(base.config.strategies) < set(full.config.strategies)  # the old ones stay
