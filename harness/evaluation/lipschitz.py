"""Lipschitz diagnostics of a critic: gradient norms, an empirical lower bound, per-layer
spectral norms (the true operator norm for convolutions, estimated by power iteration), and a
certified upper bound: the product of per-layer bounds that are never below the true norms
(exact in float64 for linear layers; for convolutions the norm of a circular convolution that
contains the layer, computed exactly by FFT)."""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.parts import critic_pack

log = logging.getLogger("harness")
ROUNDING_MARGIN = 1e-9  # relative; float64 SVD/FFT errors are ~1e-13 at these sizes


class LayerNorm(NamedTuple):
    name: str
    reshaped: float  # σ_max of the weight reshaped to (out, -1)
    operator: float  # σ_max of the layer as a linear map on its actual input (estimate)
    bound: float  # certified: ≥ the operator norm


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
    """max |f(a) − f(b)| / ‖a − b‖ over random pairs of rows of ``x`` (of packs of rows for
    a critic that scores k rows at once: then ``x`` has k times as many rows as f values)."""
    f = critic(x).flatten()
    x = x.reshape(len(f), -1)
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


def _operator_norm(
    module: nn.Module, in_shape: torch.Size, n_iter: int, tol: float = 1e-7
) -> float:
    """Power iteration on AᵀA for a conv layer A (bias excluded) on inputs of ``in_shape``,
    until σ changes by less than ``tol`` (relative) or ``n_iter`` steps: it approaches the
    norm from below, so it estimates σ but does not bound it (see :func:`conv_norm_bound`)."""
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

    sigma = 0.0
    for _ in range(n_iter):
        v = adjoint(forward(v))
        v = v / v.norm()
        previous, sigma = sigma, forward(v).norm().item()
        if abs(sigma - previous) <= tol * sigma:
            break
    return sigma


def conv_norm_bound(
    weight: Tensor,
    in_hw: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> float:
    """A certified upper bound on ‖A‖₂ for the zero-padded ``conv2d(·, weight)`` on inputs of
    spatial size ``in_hw`` (bias excluded).

    Padding embeds the input isometrically; splitting the padded input into its stride×stride
    phases (a permutation) makes the strided convolution a stride-1 one with stride² times the
    input channels. On a periodic grid of N ≥ phase length + kernel taps that convolution wraps
    around nowhere that A reads, so A = P·C·E with E an isometry, P a coordinate projection and
    C circular: ‖A‖ ≤ ‖C‖ = the largest σ of the kernel's DFT over the N×N frequencies,
    computed in float64 (Sedghi et al., 2019, for the circular case)."""
    w = weight.detach().to(torch.float64)
    (dh, dw), (sh, sw) = dilation, stride
    if (dh, dw) != (1, 1):  # a dilated kernel is a larger kernel with zero taps
        kh, kw = w.shape[-2:]
        dilated = w.new_zeros(*w.shape[:2], dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        dilated[..., ::dh, ::dw] = w
        w = dilated
    kh, kw = w.shape[-2:]
    th, tw = -(-kh // sh), -(-kw // sw)  # taps per phase
    w = F.pad(w, (0, tw * sw - kw, 0, th * sh - kh))
    out_ch, in_ch = w.shape[:2]
    w = w.reshape(out_ch, in_ch, th, sh, tw, sw).permute(0, 1, 3, 5, 2, 4)
    w = w.reshape(out_ch, in_ch * sh * sw, th, tw)
    size = (
        -(-(in_hw[0] + 2 * padding[0]) // sh) + th,
        -(-(in_hw[1] + 2 * padding[1]) // sw) + tw,
    )
    spectrum = torch.fft.fft2(w, s=size).permute(2, 3, 0, 1)  # (N, N, out, in·s²)
    per_group = out_ch // groups
    sigma = max(
        torch.linalg.matrix_norm(spectrum[..., g * per_group : (g + 1) * per_group, :], ord=2)
        .max()
        .item()
        for g in range(groups)
    )
    return sigma * (1 + ROUNDING_MARGIN)


def _layer_bound(module: nn.Module, in_shape: torch.Size) -> float:
    """Certified ‖layer‖₂ (bias excluded) on inputs of ``in_shape``."""
    w = module.weight
    if isinstance(module, nn.Linear):
        exact = torch.linalg.matrix_norm(w.detach().to(torch.float64), ord=2).item()
        return exact * (1 + ROUNDING_MARGIN)
    conv = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
    if isinstance(module, nn.ConvTranspose2d):  # the adjoint of conv2d(w) on its output size
        x = torch.zeros((1, *in_shape), device=w.device, dtype=w.dtype)
        out = F.conv_transpose2d(
            x, w, output_padding=module.output_padding, groups=module.groups, **conv
        )
        in_hw = tuple(out.shape[-2:])
    else:
        in_hw = tuple(in_shape[-2:])
    return conv_norm_bound(w, in_hw, groups=module.groups, **conv)


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
        critic(example[: critic_pack(critic)])  # a PacGAN critic scores k at once
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
                _layer_bound(module, shapes[name]),
            )
        )
    return out


HARNESS_MODULES = {  # built-in modules that compose their layers in sequence, 1-Lipschitz between
    "harness.builtins.architecture_nets.Critic",
    "harness.builtins.pacgan_nets.Maxout",
    "harness.builtins.pacgan_nets.MaxoutCritic",
    "harness.builtins.packing.packed_class.<locals>.Packed",
    "harness.builtins.spectral_layers.BatchableSpectralNorm",  # torch's, batchable
    "harness.builtins.orthogonal_layers.Bjorck",
    "harness.builtins.orthogonal_layers.GroupSort",
}


def unknown_module(critic: nn.Module) -> str | None:
    """The first module of ``critic`` the product bound does not cover (None when it covers
    them all): the layers it measures (Linear, Conv2d, ConvTranspose2d), 1-Lipschitz maps
    (ReLU, LeakyReLU with slope ≤ 1, Tanh, Flatten, ...), torch's weight parametrizations
    (spectral norm, ...) and the built-ins' sequential containers. A module of another type
    (a third party's wrapper) may compute anything, e.g. divide by its own input gradient."""
    from torch.nn.utils.parametrizations import _SpectralNorm
    from torch.nn.utils.parametrize import ParametrizationList

    known = (nn.Sequential, nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.ReLU, nn.Tanh)
    known += (nn.Flatten, nn.Unflatten, nn.Identity, nn.ModuleDict, ParametrizationList)
    known += (_SpectralNorm,)
    for module in critic.modules():
        cls = type(module)
        name = f"{cls.__module__}.{cls.__qualname__}"
        if cls in known or name in HARNESS_MODULES:
            continue
        if cls is nn.LeakyReLU and abs(module.negative_slope) <= 1:
            continue
        if cls.__module__ == "torch.nn.utils.parametrize" and cls.__name__.startswith(
            "Parametrized"
        ):  # a layer with a parametrized weight: its bound is taken on the weight it uses
            continue
        return cls.__qualname__
    return None


@lru_cache(maxsize=64)
def _say_uncertified(name: str) -> None:
    log.warning(
        "lipschitz: no certified upper bound for a critic holding %s, a module the bound does "
        "not know (lipschitz_upper_bound is left out; the gradient norms and lower bound stand)",
        name,
    )


def lipschitz_upper_bound(norms: list[LayerNorm]) -> float:
    """Product of the layers' certified norm bounds: an upper bound for sequential critics
    whose activations are 1-Lipschitz (ReLU, LeakyReLU, GroupSort), not for residual ones."""
    return math.prod(n.bound for n in norms)


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
        unknown = unknown_module(critic)
        if unknown is None:
            out["lipschitz_upper_bound"] = lipschitz_upper_bound(norms)
        else:
            _say_uncertified(unknown)
        out |= {f"sigma_{n.name}": n.operator for n in norms}
        out |= {f"sigma_reshaped_{n.name}": n.reshaped for n in norms}
    finally:
        critic.train(was_training)
    return out
