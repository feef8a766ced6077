"""Lipschitz diagnostics of a critic: gradient norms, an empirical lower bound, and per-layer
spectral norms (the true operator norm for convolutions) whose product bounds it from above."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm(NamedTuple):
    name: str
    reshaped: float  # σ_max of the weight reshaped to (out, -1)
    operator: float  # σ_max of the layer as a linear map on its actual input


def interpolates(real: Tensor, fake: Tensor, gen: torch.Generator | None = None) -> Tensor:
    """x̂ = εx + (1−ε)g, ε ~ U(0, 1) per sample (the gradient penalty's points)."""
    eps = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device, generator=gen)
    return (eps * real + (1 - eps) * fake).detach()


def gradient_norms(critic: nn.Module, x: Tensor) -> Tensor:
    """‖∇ₓ f(x)‖₂ per sample; the critic's parameters accumulate no gradient."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x)
    return grad.flatten(1).norm(dim=1)


def norm_stats(norms: Tensor, prefix: str) -> dict[str, float]:
    norms = norms.detach().float()
    return {
        f"{prefix}_mean": norms.mean().item(),
        f"{prefix}_p95": torch.quantile(norms, 0.95).item(),
        f"{prefix}_max": norms.max().item(),
        f"{prefix}_frac_above_1": (norms > 1).float().mean().item(),
    }


@torch.no_grad()
def lipschitz_lower_bound(
    critic: nn.Module, x: Tensor, pairs: int = 4096, gen: torch.Generator | None = None
) -> float:
    """max |f(a) − f(b)| / ‖a − b‖ over random pairs of rows of ``x``."""
    f = critic(x).flatten()
    i = torch.randint(0, len(x), (pairs,), device=x.device, generator=gen)
    j = torch.randint(0, len(x), (pairs,), device=x.device, generator=gen)
    dist = (x[i] - x[j]).flatten(1).norm(dim=1)
    keep = dist > 1e-8
    return ((f[i] - f[j]).abs()[keep] / dist[keep]).max().item() if keep.any() else 0.0


def _output_padding(module: nn.Module, in_hw: tuple[int, int], out_hw: tuple[int, int]):
    """Output padding that makes the adjoint of a strided conv return the input's size."""
    k, s, p, d = module.kernel_size, module.stride, module.padding, module.dilation
    return tuple(
        in_hw[a] - ((out_hw[a] - 1) * s[a] - 2 * p[a] + d[a] * (k[a] - 1) + 1) for a in range(2)
    )


def _operator_norm(module: nn.Module, in_shape: torch.Size, n_iter: int) -> float:
    """Power iteration on AᵀA for a conv layer A (bias excluded) on inputs of ``in_shape``."""
    w = module.weight
    conv = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
    conv["groups"] = module.groups
    gen = torch.Generator(device=w.device).manual_seed(0)
    v = torch.randn((1, *in_shape), device=w.device, dtype=w.dtype, generator=gen)
    if isinstance(module, nn.ConvTranspose2d):
        out_pad = module.output_padding

        def forward(t):
            return F.conv_transpose2d(t, w, output_padding=out_pad, **conv)

        def adjoint(t):
            return F.conv2d(t, w, **conv)
    else:
        out_hw = F.conv2d(v, w, **conv).shape[-2:]
        pad = _output_padding(module, tuple(in_shape[-2:]), tuple(out_hw))

        def forward(t):
            return F.conv2d(t, w, **conv)

        def adjoint(t):
            return F.conv_transpose2d(t, w, output_padding=pad, **conv)

    for _ in range(n_iter):
        v = adjoint(forward(v))
        v = v / v.norm()
    return forward(v).norm().item()


@torch.no_grad()
def layer_spectral_norms(critic: nn.Module, example: Tensor, n_iter: int = 100) -> list[LayerNorm]:
    """σ of every Linear/Conv2d/ConvTranspose2d layer, on the input shapes seen for ``example``."""
    layers = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    shapes: dict[str, torch.Size] = {}

    def record(name: str):
        def hook(_module, args) -> None:  # a pre-hook returning a value would replace the input
            shapes.setdefault(name, args[0].shape[1:])

        return hook

    hooks = [
        m.register_forward_pre_hook(record(name))
        for name, m in critic.named_modules()
        if isinstance(m, layers)
    ]
    try:
        critic(example[:1])
    finally:
        for hook in hooks:
            hook.remove()
    out = []
    for name, module in critic.named_modules():
        if name not in shapes:
            continue
        w = module.weight
        matrix = w.transpose(0, 1) if isinstance(module, nn.ConvTranspose2d) else w
        reshaped = torch.linalg.matrix_norm(matrix.flatten(1).float(), ord=2).item()
        operator = (
            reshaped
            if isinstance(module, nn.Linear)
            else _operator_norm(module, shapes[name], n_iter)
        )
        out.append(
            LayerNorm(
                name.replace(".", "_").replace("_parametrizations_weight_original", ""),
                reshaped,
                operator,
            )
        )
    return out


def lipschitz_upper_bound(norms: list[LayerNorm]) -> float:
    """Product of the layers' operator norms: an upper bound for sequential critics whose
    activations are 1-Lipschitz (ReLU, LeakyReLU, GroupSort), not for residual ones."""
    return math.prod(n.operator for n in norms)


def lipschitz_diagnostics(critic: nn.Module, real: Tensor, fake: Tensor, seed: int = 0) -> dict:
    """Every diagnostic, flattened into metric names. The critic's state is left untouched:
    it runs in eval mode, so spectral-norm power iterations do not advance."""
    was_training = critic.training
    critic.eval()
    gen = torch.Generator(device=real.device).manual_seed(seed)
    try:
        out = norm_stats(gradient_norms(critic, interpolates(real, fake, gen)), "grad_norm_interp")
        out |= norm_stats(gradient_norms(critic, real), "grad_norm_real")
        out |= norm_stats(gradient_norms(critic, fake), "grad_norm_fake")
        out["lipschitz_lower_bound"] = lipschitz_lower_bound(
            critic, torch.cat([real, fake]), gen=gen
        )
        norms = layer_spectral_norms(critic, real)
        out["lipschitz_upper_bound"] = lipschitz_upper_bound(norms)
        out |= {f"sigma_{n.name}": n.operator for n in norms}
        out |= {f"sigma_reshaped_{n.name}": n.reshaped for n in norms}
    finally:
        critic.train(was_training)
    return out
