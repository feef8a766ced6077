"""PacGAN's Stacked MNIST networks (Lin et al., 2018, "PacGAN: the power of two samples in
generative adversarial networks", their ``stacked_MNIST_experiments`` code) as architectures:

- ``pacgan_dcgan`` — Table 2's DCGAN (their VEEGAN experiment): 5×5 kernels, batch norm in
  both networks, N(0, 0.02²) init, U(−1, 1) noise, real images in [0, 1] against a tanh
  generator as in their code. ``width`` 64 and ``z_dim`` 100 are theirs; a reduced width keeps
  their D/G parameter ratio when ``z_dim`` shrinks with it: D/G is 0.9547 at width 64 and
  ``z_dim`` 100, 0.9552 at width 16 and ``z_dim`` 25.
- ``pacgan_dcgan_small`` — Table 3's small discriminators (their Unrolled GAN experiment): 3×3
  kernels, a discriminator of ``d_width`` 2 (their ``D=0.25G`` folder: 585 parameters) or 4
  (``D=0.5G``: 1,889) first channels against a fixed 64-channel generator (287,875 parameters
  at ``z_dim`` 256), normal noise, data in [−1, 1].

``pack`` k: the discriminator scores k samples stacked along channels (PacGANk).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from pydantic import Field

from harness.builtins.packing import packed
from harness.core.hookspecs import hookimpl
from harness.core.parts import Architecture, Output


def _check(name: str, data_shape: tuple[int, ...]) -> None:
    if len(data_shape) != 3 or tuple(data_shape[1:]) != (28, 28):
        shape = "×".join(map(str, data_shape))
        raise ValueError(f"{name} needs C×28×28 images, got samples of shape {shape}")


class PacGANDCGAN(Architecture):
    """Table 2's DCGAN of PacGAN's code: a 4-layer 5×5 strided-conv discriminator (``width``,
    2×, 4×, 8× channels, batch norm after the first) and the mirrored transposed-conv generator
    with batch norm; N(0, 0.02²) init; U(−1, 1) noise. ``unit_data``: real images in [0, 1]
    against a tanh generator, as their code feeds them."""

    stackable = True  # standard layers: runs may train as one stacked model

    code_modules = ("harness.builtins.pacgan_dcgan_nets", "harness.builtins.architecture_nets")
    per_sample_critic = False  # batch norm in the discriminator, as theirs

    def __init__(
        self,
        width: Annotated[int, Field(ge=1, le=2**12)] = 64,
        pack: Annotated[int, Field(ge=1, le=64)] = 1,
        unit_data: bool = True,
    ):
        self.width, self.unit_data = width, unit_data
        self.pack = self.batch_multiple = pack

    def build(self, z_dim: int, data_shape: tuple[int, ...], output: Output):
        _check("pacgan_dcgan", data_shape)
        from harness.builtins.pacgan_dcgan_nets import dcgan_critic, dcgan_generator, tf_init_

        generator = dcgan_generator(z_dim, self.width, data_shape[0], self.unit_data)
        critic = packed(
            partial(dcgan_critic, self.width, unit_data=self.unit_data), data_shape, self.pack
        )
        return tf_init_(generator), tf_init_(critic)


class PacGANDCGANSmall(Architecture):
    """Table 3's networks of PacGAN's code (after Unrolled GAN): a 3-layer 3×3 strided-conv
    discriminator of ``d_width``, 2×, 4× channels with batch norm and LeakyReLU 0.3, against a
    64-32-16-8-channel transposed-conv generator; ``d_width`` 2 is their ``D=0.25G`` network,
    4 their ``D=0.5G``."""

    stackable = True  # standard layers: runs may train as one stacked model

    code_modules = ("harness.builtins.pacgan_dcgan_nets", "harness.builtins.architecture_nets")
    per_sample_critic = False  # batch norm in the discriminator, as theirs

    def __init__(
        self,
        d_width: Annotated[int, Field(ge=1, le=2**12)] = 2,
        pack: Annotated[int, Field(ge=1, le=64)] = 1,
    ):
        self.d_width = d_width
        self.pack = self.batch_multiple = pack

    def build(self, z_dim: int, data_shape: tuple[int, ...], output: Output):
        _check("pacgan_dcgan_small", data_shape)
        from harness.builtins.pacgan_dcgan_nets import small_critic, small_generator, tf_init_

        generator = small_generator(z_dim, data_shape[0])
        critic = packed(partial(small_critic, self.d_width), data_shape, self.pack)
        return tf_init_(generator), tf_init_(critic)


@hookimpl
def register_architectures(register):
    register("pacgan_dcgan", PacGANDCGAN)
    register("pacgan_dcgan_small", PacGANDCGANSmall)
