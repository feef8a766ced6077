"""Built-in Lipschitz strategies: none, weight clipping, gradient penalty, spectral norm."""

import torch
from torch import Tensor, nn

import harness
from harness.parts import Constraint


class NoConstraint(Constraint):
    """No Lipschitz constraint (the plain GAN baseline)."""


class WeightClip(Constraint):
    """Clip every critic parameter to [-c, c] after each critic step (WGAN, Arjovsky et al.,
    2017; RMSprop lr 5e-5, c = 0.01)."""

    default_optimizer = {"name": "rmsprop", "lr": 5e-5}

    def __init__(self, c: float = 0.01):
        if c <= 0:
            raise ValueError("c must be positive")
        self.c = c

    @torch.no_grad()
    def after_critic_step(self, critic: nn.Module) -> None:
        params = [p for p in critic.parameters()]
        torch._foreach_clamp_min_(params, -self.c)
        torch._foreach_clamp_max_(params, self.c)


def interpolate(real: Tensor, fake: Tensor) -> Tensor:
    """x̂ = εx + (1−ε)g with ε ~ U(0, 1) per sample."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device)
    return eps * real + (1 - eps) * fake


class GradientPenalty(Constraint):
    """λ·E[(‖∇c(x̂)‖₂ − center)²] on random interpolates x̂ (WGAN-GP, Gulrajani et al., 2017;
    Adam lr 1e-4, betas (0, 0.9), λ = 10)."""

    default_optimizer = {"name": "adam", "lr": 1e-4, "betas": (0.0, 0.9)}

    def __init__(self, weight: float = 10.0, center: float = 1.0):
        self.weight, self.center = weight, center

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        x_hat = interpolate(real, fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        norms = grad.flatten(1).norm(2, dim=1)
        return self.weight * ((norms - self.center) ** 2).mean()


class SpectralNorm(Constraint):
    """Divide each critic layer's weight by its largest singular value, estimated by power
    iteration (SNGAN, Miyato et al., 2018; Adam lr 2e-4, betas (0.5, 0.999))."""

    def __init__(self, n_power_iterations: int = 1):
        self.n_power_iterations = n_power_iterations

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        for module in list(critic.modules()):
            if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                nn.utils.parametrizations.spectral_norm(
                    module, n_power_iterations=self.n_power_iterations
                )
        return critic


@harness.hookimpl
def register_constraints(register):
    register("none", NoConstraint)
    register("weight_clip", WeightClip)
    register("gradient_penalty", GradientPenalty)
    register("spectral_norm", SpectralNorm)
