import pytest
import torch
from harness_maxnorm import MaxNorm
from harness_maxnorm.normalized import GradientNormalization

from harness.testing import DEVICES, check_constraint


@pytest.mark.parametrize("device", DEVICES)
def test_contract(device):
    check_constraint(MaxNorm, device=device, c=0.5)
    check_constraint(GradientNormalization, device=device)


def test_rows_end_within_c():
    critic = torch.nn.Linear(3, 2)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.1, 0.0, 0.0]]))
    MaxNorm(c=1.0).after_critic_step(critic)
    assert torch.allclose(critic.weight, torch.tensor([[0.6, 0.8, 0.0], [0.1, 0.0, 0.0]]))
