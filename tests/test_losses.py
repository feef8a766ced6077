import math

import pytest
import torch

from harness.builtins.losses import BCE, BCEMinimax, Hinge, Wasserstein


def test_bce_at_zero_logits():
    zeros = torch.zeros(4)
    assert BCE().critic_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert BCE().generator_loss(zeros).item() == pytest.approx(math.log(2))


def test_bce_confident_critic():
    real, fake = torch.full((3,), 20.0), torch.full((3,), -20.0)
    assert BCE().critic_loss(real, fake).item() == pytest.approx(0.0, abs=1e-8)


def _generator_grad(loss, logit: float) -> float:
    x = torch.tensor([logit], requires_grad=True)
    loss.generator_loss(x).backward()
    return x.grad.item()


def test_minimax_gradient_vanishes_where_non_saturating_does_not():
    # d/dx log(1 - sigmoid(x)) = -sigmoid(x) -> 0 when the critic rejects fakes (x << 0)
    assert abs(_generator_grad(BCEMinimax(), -10.0)) < 1e-4
    assert abs(_generator_grad(BCE(), -10.0)) > 0.99
    assert BCEMinimax().generator_loss(torch.zeros(2)).item() == pytest.approx(-math.log(2))


def test_wasserstein():
    real, fake = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 3.0])
    assert Wasserstein().critic_loss(real, fake).item() == pytest.approx(1.0 - 2.0)
    assert Wasserstein().generator_loss(fake).item() == pytest.approx(-1.0)


def test_hinge():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.0])
    assert Hinge().critic_loss(real, fake).item() == pytest.approx(0.5 + 0.5)
    assert Hinge().generator_loss(fake).item() == pytest.approx(1.0)


def test_outputs():
    assert BCE.output == "logit" and BCEMinimax.output == "logit"
    assert Wasserstein.output == "score" and Hinge.output == "score"
