"""Gradient normalization (Wu et al., 2021): a critic transform that needs input gradients."""

import torch
from torch import nn

import harness
from harness.parts import Constraint


class Normalized(nn.Module):
    """f(x) / (‖∇f(x)‖ + |f(x)|). The critic stays inside as a submodule (so the harness still
    finds a packing critic's ``pack``); under no_grad the gradient is taken all the same."""

    def __init__(self, critic: nn.Module):
        super().__init__()
        self.critic = critic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        graph = torch.is_grad_enabled()  # False when evaluation scores samples
        with torch.enable_grad():
            x = x if x.requires_grad else x.detach().requires_grad_(True)
            f = self.critic(x)
            (grad,) = torch.autograd.grad(f.sum(), x, create_graph=graph)
        norm = grad.reshape(len(f), -1).norm(dim=1)  # one score per pack of k samples
        return f / (norm + f.abs() + 1e-12)


class GradientNormalization(Constraint):
    """Make the critic 1-Lipschitz by construction: divide f by its input gradient's norm."""

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        return Normalized(critic)


@harness.hookimpl
def register_constraints(register):
    register("gradient_normalization", GradientNormalization)
