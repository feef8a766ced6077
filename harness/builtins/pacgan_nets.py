"""The torch networks of PacGAN's 2-D experiments (their ``2DGrid_GAN&PacGAN`` code): a maxout
critic and a batch-norm ReLU generator. Imported by :mod:`harness.builtins.pacgan` when it
builds."""

from __future__ import annotations

from torch import Tensor, nn


class Maxout(nn.Module):
    """``units`` outputs, each the largest of ``pieces`` affine maps of the input
    (Goodfellow et al., 2013): a linear layer to units × pieces, then a max over the pieces."""

    def __init__(self, n_in: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(n_in, units * pieces)

    def forward(self, x: Tensor) -> Tensor:
        # max, not amax: the same values and, without ties, the same gradient, and its backward
        # scatters to the argmax instead of comparing every piece with the max (7-9 % faster)
        return self.linear(x).view(-1, self.units, self.pieces).max(dim=-1).values


class MaxoutCritic(nn.Module):
    """``depth`` maxout layers of ``width`` units with ``pieces`` pieces, then a linear output;
    one score per sample, shape (N,)."""

    def __init__(self, n_in: int, width: int, depth: int, pieces: int):
        super().__init__()
        sizes = [n_in] + [width] * depth
        layers = [Maxout(a, width, pieces) for a, width in zip(sizes, sizes[1:], strict=False)]
        self.body = nn.Sequential(nn.Flatten(), *layers, nn.Linear(sizes[-1], 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).flatten()


def batchnorm_generator(z_dim: int, width: int, depth: int, n_out: int) -> nn.Sequential:
    """``depth`` hidden layers: linear without bias, batch norm (population statistics with
    momentum 0.05, as their code), ReLU; then a linear output with a bias."""
    layers: list[nn.Module] = []
    n_in = z_dim
    for _ in range(depth):
        layers += [nn.Linear(n_in, width, bias=False), nn.BatchNorm1d(width, momentum=0.05)]
        layers.append(nn.ReLU())
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def gaussian_init_(module: nn.Module, std: float) -> nn.Module:
    """Their initialisation: every linear weight N(0, std²), every bias 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
