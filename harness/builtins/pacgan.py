"""PacGAN's architecture for 2-D toys (Lin et al., 2018, "PacGAN: the power of two samples in
generative adversarial networks", their ``2DGrid_GAN&PacGAN`` configuration)."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from harness.builtins.packing import packed
from harness.core.hookspecs import hookimpl
from harness.core.parts import Architecture, Output


class PacGANToy(Architecture):
    """Maxout critic and batch-norm generator of PacGAN's 2-D grid and ring: critic ``depth``
    maxout layers × ``width`` units × ``pieces`` pieces and a linear output; generator
    ``gen_depth`` hidden layers × ``gen_width`` ReLU units with batch norm and no biases;
    weights N(0, ``init_std``²). ``pack`` k: the critic scores k samples concatenated
    (PacGANk); batch sizes must then be multiples of k."""

    stackable = True  # standard layers: runs may train as one stacked model

    code_modules = ("harness.builtins.pacgan_nets",)  # its networks: part of its identity

    def __init__(
        self,
        width: Annotated[int, Field(ge=1, le=2**14)] = 200,
        depth: Annotated[int, Field(ge=1, le=64)] = 3,
        pieces: Annotated[int, Field(ge=1, le=64)] = 5,
        gen_width: Annotated[int, Field(ge=1, le=2**14)] = 400,
        gen_depth: Annotated[int, Field(ge=1, le=64)] = 4,
        init_std: Annotated[float, Field(gt=0, le=10)] = 0.02,
        pack: Annotated[int, Field(ge=1, le=64)] = 1,
    ):
        self.width, self.depth, self.pieces = width, depth, pieces
        self.gen_width, self.gen_depth, self.init_std = gen_width, gen_depth, init_std
        self.pack = self.batch_multiple = pack

    def build(self, z_dim: int, data_shape: tuple[int, ...], output: Output):
        from torch import nn

        from harness.builtins.pacgan_nets import MaxoutCritic, batchnorm_generator, gaussian_init_

        dim = math.prod(data_shape)
        generator = nn.Sequential(
            batchnorm_generator(z_dim, self.gen_width, self.gen_depth, dim),
            nn.Unflatten(1, data_shape),
        )

        def critic(shape: tuple[int, ...]) -> nn.Module:
            return MaxoutCritic(math.prod(shape), self.width, self.depth, self.pieces)

        critic = packed(critic, data_shape, self.pack)
        return gaussian_init_(generator, self.init_std), gaussian_init_(critic, self.init_std)


@hookimpl
def register_architectures(register):
    register("pacgan_toy", PacGANToy)
