import pytest
import torch
from torch import nn

from plugins.architectures import DCGAN28, MLP
from plugins.constraints import GradientPenalty, NoConstraint, SpectralNorm, WeightClip


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
