"""Max-norm projection: a Lipschitz strategy for harness, registered as ``max_norm``."""

import torch
from torch import nn

import harness
from harness.parts import Constraint


class MaxNorm(Constraint):
    """Keep each critic weight row within the L2 ball of radius c. After every critic step,
    longer rows are scaled back to length c (max-norm regularisation)."""

    def __init__(self, c: float = 1.0):
        if not c > 0:  # not `c <= 0`: NaN fails every comparison
            raise ValueError("c must be positive")
        self.c = c

    @torch.no_grad()
    def after_critic_step(self, critic: nn.Module) -> None:
        for weight in critic.parameters():
            if weight.dim() > 1:  # weight matrices and conv kernels; biases stay free
                rows = weight.view(len(weight), -1)
                rows.mul_((self.c / rows.norm(dim=1, keepdim=True)).clamp(max=1))


@harness.hookimpl
def register_constraints(register):
    register("max_norm", MaxNorm)
