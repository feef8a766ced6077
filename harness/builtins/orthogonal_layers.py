"""The torch half of :mod:`harness.builtins.orthogonal`: Björck orthonormalisation and GroupSort,
imported when a critic is wrapped (so listing and validating never import torch)."""

import torch
from torch import Tensor, nn


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
