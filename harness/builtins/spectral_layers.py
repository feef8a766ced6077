"""Spectral normalisation that also runs stacked: torch's parametrization with its power
iteration written without ``out=`` arguments (which ``torch.func.vmap`` cannot batch), so
each member of a stacked critic iterates on its own vectors. Per run it computes what
``torch.nn.utils.parametrizations.spectral_norm`` does, operation for operation."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm


class BatchableSpectralNorm(_SpectralNorm):
    @torch.no_grad()
    def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
        for _ in range(n_power_iterations):
            self._u.copy_(F.normalize(torch.mv(weight_mat, self._v), dim=0, eps=self.eps))
            self._v.copy_(F.normalize(torch.mv(weight_mat.H, self._u), dim=0, eps=self.eps))


def spectral_norm(module: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """``torch.nn.utils.parametrizations.spectral_norm(module, n_power_iterations=...)``
    with :class:`BatchableSpectralNorm`."""
    dim = (
        1 if isinstance(module, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d) else 0
    )
    norm = BatchableSpectralNorm(module.weight, n_power_iterations, dim)
    parametrize.register_parametrization(module, "weight", norm)
    return module
