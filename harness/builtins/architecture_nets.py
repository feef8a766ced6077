"""The torch networks of :mod:`harness.builtins.architectures`, imported when a run builds them
(so listing and validating never import torch)."""

import math

from torch import Tensor, nn


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Critic(nn.Module):
    """Wraps a body so the critic returns one score (or logit) per sample, shape (N,)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).flatten()


def mlp_generator(z_dim: int, hidden: list[int], data_shape: tuple[int, ...]) -> nn.Module:
    return nn.Sequential(mlp([z_dim, *hidden, math.prod(data_shape)]), nn.Unflatten(1, data_shape))


def mlp_critic(hidden: list[int], shape: tuple[int, ...]) -> nn.Module:
    return Critic(nn.Sequential(nn.Flatten(), mlp([math.prod(shape), *hidden, 1])))


def dcgan28_generator(z_dim: int, d: int, channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(z_dim, 4 * d * 7 * 7),
        nn.ReLU(),
        nn.Unflatten(1, (4 * d, 7, 7)),
        nn.ConvTranspose2d(4 * d, 2 * d, 4, stride=2, padding=1),  # 14×14
        nn.ReLU(),
        nn.ConvTranspose2d(2 * d, d, 4, stride=2, padding=1),  # 28×28
        nn.ReLU(),
        nn.Conv2d(d, channels, 3, padding=1),
        nn.Tanh(),
    )


def dcgan28_critic(d: int, shape: tuple[int, ...]) -> nn.Module:
    return Critic(
        nn.Sequential(
            nn.Conv2d(shape[0], d, 4, stride=2, padding=1),  # 14×14
            nn.LeakyReLU(0.2),
            nn.Conv2d(d, 2 * d, 4, stride=2, padding=1),  # 7×7
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * d, 4 * d, 3, stride=2, padding=1),  # 4×4
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(4 * d * 4 * 4, 1),
        )
    )
