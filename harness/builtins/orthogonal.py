"""Orthonormal layers and GroupSort activations: a critic that is 1-Lipschitz by construction
(Anil, Lucas & Grosse, 2019, "Sorting out Lipschitz function approximation"). The layers
themselves live in :mod:`harness.builtins.orthogonal_layers`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from harness.core.parts import Constraint

if TYPE_CHECKING:
    from torch import nn


def conv_overlap(module: nn.Conv2d) -> int:
    """The most kernel windows that cover one input pixel: ∏ ⌈k / (s / gcd(s, d))⌉ over the
    two axes. A conv's operator norm is at most √overlap times its reshaped kernel's norm,
    because ‖conv x‖² = Σ_windows ‖W·patch‖² ≤ ‖W‖²·overlap·‖x‖²."""
    return math.prod(
        math.ceil(k / (s // math.gcd(s, d)))
        for k, s, d in zip(module.kernel_size, module.stride, module.dilation, strict=True)
    )


class Orthogonal(Constraint):
    """Björck-orthonormal layers and GroupSort activations (Anil, Lucas & Grosse, 2019; their
    LWGAN code: Adam betas (0.5, 0.999), lr 2e-4 for the generator and 2e-3 for the critic —
    one optimiser here, so 2e-4). Linear weights are orthonormalised; a conv's reshaped kernel
    is orthonormalised and divided by √(windows covering a pixel), which certifies its true
    operator norm ≤ 1. ReLU/LeakyReLU become GroupSort; weights start orthogonal."""

    default_optimizer = {"name": "adam", "lr": 2e-4, "betas": (0.5, 0.999)}
    members = "native"  # its parametrized layers run under vmap, each member on its own weights
    code_modules = ("harness.builtins.orthogonal_layers",)  # its layers: part of its code identity

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
        from torch import nn
        from torch.nn.utils import parametrize

        from harness.builtins.orthogonal_layers import Bjorck, GroupSort

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
