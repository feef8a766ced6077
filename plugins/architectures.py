"""Built-in architectures: an MLP for 2-D toys and a DCGAN for 28×28 images."""

import math
from typing import Annotated

from pydantic import Field
from torch import Tensor, nn

import harness
from harness.parts import Architecture, Output
from plugins.packing import packed


def _mlp(sizes: list[int]) -> nn.Sequential:
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


class MLP(Architecture):
    """ReLU MLPs for generator and critic, ``depth`` hidden layers of ``width`` units
    (the WGAN-GP toy code: 3 × 512). ``pack`` k: the critic scores k samples concatenated
    (PacGAN); batch sizes must then be multiples of k."""

    def __init__(
        self,
        width: Annotated[int, Field(ge=1, le=2**16)] = 512,
        depth: Annotated[int, Field(ge=0, le=64)] = 3,
        pack: Annotated[int, Field(ge=1, le=64)] = 1,
    ):
        self.width, self.depth = width, depth
        self.pack = self.batch_multiple = pack

    def build(self, z_dim: int, data_shape: tuple[int, ...], output: Output):
        dim = math.prod(data_shape)
        hidden = [self.width] * self.depth
        generator = nn.Sequential(_mlp([z_dim, *hidden, dim]), nn.Unflatten(1, data_shape))

        def critic(shape: tuple[int, ...]) -> nn.Module:
            return Critic(nn.Sequential(nn.Flatten(), _mlp([math.prod(shape), *hidden, 1])))

        return generator, packed(critic, data_shape, self.pack)


class DCGAN28(Architecture):
    """DCGAN for 28×28 images after the WGAN-GP MNIST code: a transposed-conv generator with
    tanh output, and a strided-conv LeakyReLU critic with a linear output and no batch norm
    (batch norm breaks per-sample gradient penalties). ``pack`` k: the critic scores k images
    stacked along channels (PacGAN); batch sizes must then be multiples of k."""

    def __init__(
        self,
        width: Annotated[int, Field(ge=1, le=2**12)] = 64,
        pack: Annotated[int, Field(ge=1, le=64)] = 1,
    ):
        self.width = width
        self.pack = self.batch_multiple = pack

    def check(self, data_shape: tuple[int, ...]) -> None:
        if len(data_shape) != 3 or tuple(data_shape[1:]) != (28, 28):
            shape = "×".join(map(str, data_shape))
            raise ValueError(f"dcgan28 needs C×28×28 images, got samples of shape {shape}")

    def build(self, z_dim: int, data_shape: tuple[int, ...], output: Output):
        self.check(data_shape)
        channels, height, wide = data_shape
        d = self.width
        generator = nn.Sequential(
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

        def critic(shape: tuple[int, ...]) -> nn.Module:
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

        return generator, packed(critic, data_shape, self.pack)


@harness.hookimpl
def register_architectures(register):
    register("mlp", MLP)
    register("dcgan28", DCGAN28)
