"""benchmarks/roofline.py counts FLOPs the way a hand count does, and agrees with torch's own
FlopCounterMode where that one can watch (no double backward)."""

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from roofline import count_flops  # noqa: E402


def test_a_linear_layer_forward_and_backward_is_three_products():
    batch, inputs, outputs = 8, 32, 16
    layer, x = torch.nn.Linear(inputs, outputs), torch.randn(batch, inputs, requires_grad=True)
    step = lambda: layer(x).sum().backward()  # noqa: E731
    product = 2 * batch * inputs * outputs  # multiply-adds of one (8×32)·(32×16) product
    assert count_flops(step) == 3 * product  # forward, grad of the input, grad of the weight
    with FlopCounterMode(display=False) as torchs:
        step()
    assert torchs.get_total_flops() == 3 * product


def test_the_penalty_double_backward_is_counted():
    layer = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(5, 4, requires_grad=True)

    def penalty():
        (grad,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
        grad.square().sum().backward()

    assert count_flops(penalty) > count_flops(lambda: layer(x).sum().backward())
