"""The torch networks of PacGAN's Stacked MNIST experiments (Lin et al., 2018; their code builds
on carpedm20's DCGAN-tensorflow). Imported by :mod:`harness.builtins.pacgan_dcgan` when it
builds.

TensorFlow's ``SAME`` padding puts the odd pixel of padding after the image; the symmetric
PyTorch padding here gives the same output sizes with the kernel grid shifted by one pixel."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from harness.builtins.architecture_nets import Critic


class UniformNoise(nn.Module):
    """N(0, 1) noise to U(−1, 1) noise, exactly: erf(z / √2) = 2Φ(z) − 1. The trainer draws
    normal noise; their code draws uniform noise."""

    def forward(self, z: Tensor) -> Tensor:
        return torch.erf(z / math.sqrt(2))


class Affine(nn.Module):
    """x ↦ scale · x + shift: the map between the harness's [−1, 1] images and another range."""

    def __init__(self, scale: float, shift: float):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


def _down(c_in: int, c_out: int, kernel: int, norm: bool, leak: float) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride=2, padding=kernel // 2)]
    return [*layers, *([nn.BatchNorm2d(c_out)] if norm else []), nn.LeakyReLU(leak)]


def _up(c_in: int, c_out: int, kernel: int, out_size: int, in_size: int) -> list[nn.Module]:
    extra = out_size - ((in_size - 1) * 2 - 2 * (kernel // 2) + kernel)  # 1 when doubling
    return [
        nn.ConvTranspose2d(c_in, c_out, kernel, 2, kernel // 2, output_padding=extra),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


def dcgan_critic(d: int, shape: tuple[int, ...], unit_data: bool) -> nn.Module:
    """Their ``discriminator``: 5×5 stride-2 convolutions to d, 2d, 4d, 8d channels
    (28→14→7→4→2), batch norm after all but the first, LeakyReLU 0.2, a linear logit. With
    ``unit_data`` it first maps the harness's [−1, 1] images to their [0, 1]."""
    sizes = [shape[0], d, 2 * d, 4 * d, 8 * d]
    layers = [Affine(0.5, 0.5)] if unit_data else []
    for i, (c_in, c_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers += _down(c_in, c_out, 5, norm=i > 0, leak=0.2)
    return Critic(nn.Sequential(*layers, nn.Flatten(), nn.Linear(8 * d * 2 * 2, 1)))


def dcgan_generator(z_dim: int, d: int, channels: int, unit_data: bool) -> nn.Module:
    """Their ``generator``: U(−1, 1) noise, a linear layer to 8d × 2 × 2, then 5×5 stride-2
    transposed convolutions to 4d, 2d, d channels and the image (2→4→7→14→28), batch norm
    and ReLU between, tanh out. With ``unit_data`` the tanh output t ∈ [−1, 1] of their
    [0, 1] data space is 2t − 1 in the harness's, so the game is theirs up to that map."""
    return nn.Sequential(
        UniformNoise(),
        nn.Linear(z_dim, 8 * d * 2 * 2),
        nn.Unflatten(1, (8 * d, 2, 2)),
        nn.BatchNorm2d(8 * d),
        nn.ReLU(),
        *_up(8 * d, 4 * d, 5, 4, 2),
        *_up(4 * d, 2 * d, 5, 7, 4),
        *_up(2 * d, d, 5, 14, 7),
        nn.ConvTranspose2d(d, channels, 5, 2, 2, output_padding=1),
        nn.Tanh(),
        *([Affine(2.0, -1.0)] if unit_data else []),
    )


def small_critic(d: int, shape: tuple[int, ...]) -> nn.Module:
    """Table 3's small discriminator (their Unrolled GAN experiment): 3×3 stride-2
    convolutions to d, 2d, 4d channels (28→14→7→4), each with batch norm and LeakyReLU 0.3,
    then a linear logit; d = 2 is their ``D=0.25G`` network, d = 4 their ``D=0.5G``."""
    sizes = [shape[0], d, 2 * d, 4 * d]
    layers = []
    for c_in, c_out in zip(sizes, sizes[1:], strict=False):
        layers += _down(c_in, c_out, 3, norm=True, leak=0.3)
    return Critic(nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * d * 4 * 4, 1)))


def small_generator(z_dim: int, channels: int) -> nn.Module:
    """Table 3's generator (their Unrolled GAN experiment): normal noise, a linear layer to
    64 × 4 × 4, 3×3 transposed convolutions to 32, 16, 8 channels (4→7→14→28) with batch norm
    and ReLU, a 3×3 convolution to the image, tanh."""
    return nn.Sequential(
        nn.Linear(z_dim, 64 * 4 * 4),
        nn.Unflatten(1, (64, 4, 4)),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        *_up(64, 32, 3, 7, 4),
        *_up(32, 16, 3, 14, 7),
        *_up(16, 8, 3, 28, 14),
        nn.Conv2d(8, channels, 3, padding=1),
        nn.Tanh(),
    )


def tf_init_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Their initialisation: convolution kernels truncated N(0, std²) at ±2 std, transposed
    convolution and linear weights N(0, std²), biases 0, batch-norm scale 1 and shift 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
        elif isinstance(layer, nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(layer.weight, std=std)
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear) and layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return module
