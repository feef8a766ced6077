"""Orthonormal layers and GroupSort activations: a critic that is 1-Lipschitz by construction
(Anil, Lucas & Grosse, 2019, "Sorting out Lipschitz function approximation")."""

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn.utils import parametrize

from harness.parts import Constraint


def spectral_bound(w: Tensor) -> Tensor:
    """A certified upper bound on ‖w‖₂: min(‖w‖_F, √(‖w‖₁‖w‖_∞))."""
    frobenius = torch.linalg.matrix_norm(w)
    holder = (w.abs().sum(0).max() * w.abs().sum(1).max()).sqrt()
    return torch.minimum(frobenius, holder)


def bjorck(w: Tensor, iterations: int = 15, beta: float = 0.5) -> Tensor:
    """First-order Björck iterations w ← (1+β)w − β·w·wᵀw (Björck & Bowie, 1971) towards the
    nearest (semi-)orthonormal matrix. ``w`` is first divided by ``spectral_bound``, so every
    singular value starts in [0, 1]; with β ≤ 1/2 each iteration σ ← (1+β)σ − βσ³ keeps it
    there and moves it towards 1, so ‖result‖₂ ≤ 1 however many iterations run."""
    w = w / spectral_bound(w).clamp_min(torch.finfo(w.dtype).tiny)
    wide = w.shape[0] < w.shape[1]
    if wide:  # iterate on the side whose Gram matrix is smaller
        w = w.T
    for _ in range(iterations):
        w = torch.addmm(w, w, w.T @ w, beta=1 + beta, alpha=-beta)
    return w.T if wide else w


def conv_overlap(module: nn.Conv2d) -> int:
    """The most kernel windows that cover one input pixel: ∏ ⌈k / (s / gcd(s, d))⌉ over the
    two axes. A conv's operator norm is at most √overlap times its reshaped kernel's norm,
    because ‖conv x‖² = Σ_windows ‖W·patch‖² ≤ ‖W‖²·overlap·‖x‖²."""
    return math.prod(
        math.ceil(k / (s // math.gcd(s, d)))
        for k, s, d in zip(module.kernel_size, module.stride, module.dilation, strict=True)
    )


class Bjorck(nn.Module):
    """Parametrisation: the weight as an (out, −1) matrix, Björck-orthonormalised, × ``scale``."""

    def __init__(self, iterations: int, beta: float, scale: float = 1.0):
        super().__init__()
        self.iterations, self.beta, self.scale = iterations, beta, scale

    def forward(self, weight: Tensor) -> Tensor:
        with torch.autocast(weight.device.type, enabled=False):  # bf16 would break σ ≤ 1
            w = bjorck(weight.flatten(1).float(), self.iterations, self.beta)
        return (self.scale * w).to(weight.dtype).view_as(weight)


class GroupSort(nn.Module):
    """Sorts each group of ``group_size`` consecutive features (channels for images): a
    permutation of its input, so 1-Lipschitz and gradient-norm preserving. Size 2 is MaxMin."""

    def __init__(self, group_size: int = 2):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        if channels % self.group_size:
            raise ValueError(f"GroupSort({self.group_size}) needs a multiple of it, got {channels}")
        groups = x.unflatten(1, (channels // self.group_size, self.group_size))
        return groups.sort(dim=2).values.flatten(1, 2)


class Orthogonal(Constraint):
    """Björck-orthonormal layers and GroupSort activations (Anil, Lucas & Grosse, 2019; their
    LWGAN code: Adam betas (0.5, 0.999), lr 2e-4 for the generator and 2e-3 for the critic —
    one optimiser here, so 2e-4). Linear weights are orthonormalised; a conv's reshaped kernel
    is orthonormalised and divided by √(windows covering a pixel), which certifies its true
    operator norm ≤ 1. ReLU/LeakyReLU become GroupSort; weights start orthogonal."""

    default_optimizer = {"name": "adam", "lr": 2e-4, "betas": (0.5, 0.999)}

    def __init__(
        self,
        iterations: Annotated[int, Field(ge=1, le=1000)] = 15,
        beta: Annotated[float, Field(gt=0, le=0.5)] = 0.5,
        group_size: Annotated[int, Field(ge=2, le=2**16)] = 2,
    ):
        if not 1 <= iterations <= 1000:
            raise ValueError("iterations must be in [1, 1000]")
        if not 0 < beta <= 0.5:
            raise ValueError("beta must be in (0, 0.5]: larger β can push singular values above 1")
        if group_size < 2:
            raise ValueError("group_size must be at least 2 (1 would make the critic linear)")
        self.iterations, self.beta, self.group_size = iterations, beta, group_size

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        for name, module in list(critic.named_modules()):
            if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
                raise ValueError(f"orthogonal needs zero padding in {name!r}")
            if isinstance(module, nn.Linear | nn.Conv2d):
                scale = 1.0 if isinstance(module, nn.Linear) else conv_overlap(module) ** -0.5
                nn.init.orthogonal_(module.weight)
                parametrize.register_parametrization(
                    module, "weight", Bjorck(self.iterations, self.beta, scale)
                )
            elif next(module.parameters(recurse=False), None) is not None:
                kind = type(module).__name__
                raise ValueError(f"orthogonal cannot bound layer {name!r} ({kind})")
            for child_name, child in module.named_children():
                if type(child) in (nn.ReLU, nn.LeakyReLU):
                    setattr(module, child_name, GroupSort(self.group_size))
        return critic
