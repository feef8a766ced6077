"""Built-in Lipschitz strategies: none, weight clipping, gradient penalties (GP, one-sided LP,
R1, DRAGAN), spectral norm, and orthonormal layers with GroupSort."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

from pydantic import AllowInfNan, Field

from harness.builtins.orthogonal import Orthogonal
from harness.core.hookspecs import hookimpl
from harness.core.parts import Constraint

if TYPE_CHECKING:
    from torch import Tensor, nn


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _weight(value: float, name: str = "weight") -> float:
    _require(math.isfinite(value) and value >= 0, f"{name} must be finite and >= 0")
    return value


class NoConstraint(Constraint):
    """No Lipschitz constraint (the plain GAN baseline)."""

    members = "elementwise"


class WeightClip(Constraint):
    """Clip every critic parameter to [-c, c] after each critic step (WGAN, Arjovsky et al.,
    2017; RMSprop lr 5e-5, c = 0.01)."""

    default_optimizer = {"name": "rmsprop", "lr": 5e-5}
    members = "elementwise"

    def __init__(self, c: Annotated[float, Field(gt=0)] = 0.01):
        _require(c > 0, "c must be positive")  # `not c > 0` also refuses NaN
        self.c = c

    def after_critic_step(self, critic: nn.Module) -> None:
        import torch

        params = [p for p in critic.parameters()]
        with torch.no_grad():
            torch._foreach_clamp_min_(params, -self.c)
            torch._foreach_clamp_max_(params, self.c)


def interpolate(real: Tensor, fake: Tensor) -> Tensor:
    """x̂ = εx + (1−ε)g with ε ~ U(0, 1) per sample."""
    import torch

    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device)
    return eps * real + (1 - eps) * fake


def critic_gradient_norms(critic: nn.Module, x: Tensor, p: float = 2.0) -> Tensor:
    """‖∇ₓ f(x)‖_p per sample, differentiable in the critic's parameters (for penalties)."""
    import torch

    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.flatten(1).norm(p, dim=1)


class GradientPenalty(Constraint):
    """λ·E[(‖∇c(x̂)‖_p − center)²] on random interpolates x̂ (WGAN-GP, Gulrajani et al., 2017;
    Adam lr 1e-4, betas (0, 0.9), λ = 10, p = 2)."""

    default_optimizer = {"name": "adam", "lr": 1e-4, "betas": (0.0, 0.9)}
    members = "elementwise"

    def __init__(
        self,
        weight: Annotated[float, Field(ge=0)] = 10.0,
        center: float = 1.0,
        p: Annotated[float, AllowInfNan(), Field(ge=1)] = 2.0,
    ):
        _require(math.isfinite(center), "center must be finite")
        _require(p >= 1, "p must be >= 1 (inf for the max norm)")
        self.weight, self.center, self.p = _weight(weight), center, p

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        norms = critic_gradient_norms(critic, interpolate(real, fake.detach()), self.p)
        return self.weight * ((norms - self.center) ** 2).mean()


class LipschitzPenalty(Constraint):
    """One-sided λ·E[(‖∇c(x̂)‖₂ − 1)₊²] on random interpolates, a₊ = max(0, a): only slopes
    above 1 are penalised (WGAN-LP, Petzka, Fischer & Lukovnikov, 2018, "On the regularization
    of Wasserstein GANs"; defaults as WGAN-GP: Adam lr 1e-4, betas (0, 0.9), λ = 10)."""

    default_optimizer = {"name": "adam", "lr": 1e-4, "betas": (0.0, 0.9)}
    members = "elementwise"

    def __init__(self, weight: Annotated[float, Field(ge=0)] = 10.0):
        self.weight = _weight(weight)

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        norms = critic_gradient_norms(critic, interpolate(real, fake.detach()))
        return self.weight * (norms - 1).relu().pow(2).mean()


class R1(Constraint):
    """Zero-centred γ/2·E‖∇c(x)‖₂² on real data only (Mescheder, Geiger & Nowozin, 2018,
    "Which training methods for GANs do actually converge?"; RMSprop lr 1e-4, γ = 10, with the
    non-saturating loss and one critic step)."""

    default_optimizer = {"name": "rmsprop", "lr": 1e-4}
    members = "elementwise"

    def __init__(self, gamma: Annotated[float, Field(ge=0)] = 10.0):
        self.gamma = _weight(gamma, "gamma")

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return self.gamma / 2 * critic_gradient_norms(critic, real).pow(2).mean()


class Dragan(Constraint):
    """λ·E[(‖∇c(x̂)‖₂ − 1)²] around real data, x̂ = x + α·c·std(x)·u with u ~ U(0, 1) per
    entry, α ~ U(0, 1) per sample and std over the batch (DRAGAN, Kodali, Abernethy, Hays &
    Kira, 2017, "On convergence and stability of GANs"; their code: c = 0.5, λ = 10, Adam lr
    1e-4, betas (0.5, 0.9), the non-saturating loss and one critic step)."""

    default_optimizer = {"name": "adam", "lr": 1e-4, "betas": (0.5, 0.9)}

    def __init__(
        self, weight: Annotated[float, Field(ge=0)] = 10.0, c: Annotated[float, Field(gt=0)] = 0.5
    ):
        _require(math.isfinite(c) and c > 0, "c must be finite and > 0")
        self.weight, self.c = _weight(weight), c

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        import torch

        real = real.detach()
        alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device)
        x_hat = real + alpha * self.c * real.std() * torch.rand_like(real)
        norms = critic_gradient_norms(critic, x_hat)
        return self.weight * ((norms - 1) ** 2).mean()


class SpectralNorm(Constraint):
    """Divide each critic layer's weight by its largest singular value, estimated by power
    iteration (SNGAN, Miyato et al., 2018; Adam lr 2e-4, betas (0.5, 0.999))."""

    members = "native"  # a power iteration per member: see spectral_layers
    code_modules = ("harness.builtins.spectral_layers",)

    def __init__(self, n_power_iterations: Annotated[int, Field(ge=1, le=100)] = 1):
        self.n_power_iterations = n_power_iterations

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        from torch import nn

        from harness.builtins.spectral_layers import spectral_norm

        for module in list(critic.modules()):
            if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                spectral_norm(module, self.n_power_iterations)
        return critic


@hookimpl
def register_constraints(register):
    register("none", NoConstraint)
    register("weight_clip", WeightClip)
    register("gradient_penalty", GradientPenalty)
    register("lipschitz_penalty", LipschitzPenalty)
    register("r1", R1)
    register("dragan", Dragan)
    register("spectral_norm", SpectralNorm)
    register("orthogonal", Orthogonal)
