"""Built-in architectures: an MLP for 2-D toys and a DCGAN for 28×28 images."""

from functools import partial
from typing import Annotated

from pydantic import Field

from harness.builtins.packing import packed
from harness.core.hookspecs import hookimpl
from harness.core.parts import Architecture, Output


class MLP(Architecture):
    """ReLU MLPs for generator and critic, ``depth`` hidden layers of ``width`` units
    (the WGAN-GP toy code: 3 × 512). ``pack`` k: the critic scores k samples concatenated
    (PacGAN); batch sizes must then be multiples of k."""

    stackable = True  # standard layers: runs may train as one stacked model

    code_modules = (
        "harness.builtins.architecture_nets",
    )  # its networks: part of its code identity

    def __init__(
        self,
        width: Annotated[int, Field(ge=1, le=2**16)] = 512,
        depth: Annotated[int, Field(ge=0, le=64)] = 3,
        pack: Annotated[int, Field(ge=1, le=64)] = 1,
    ):
        self.width, self.depth = width, depth
        self.pack = self.batch_multiple = pack

    def build(self, z_dim: int, data_shape: tuple[int, ...], output: Output):
        from harness.builtins.architecture_nets import mlp_critic, mlp_generator

        hidden = [self.width] * self.depth
        generator = mlp_generator(z_dim, hidden, data_shape)
        return generator, packed(partial(mlp_critic, hidden), data_shape, self.pack)


class DCGAN28(Architecture):
    """DCGAN for 28×28 images after the WGAN-GP MNIST code: a transposed-conv generator with
    tanh output, and a strided-conv LeakyReLU critic with a linear output and no batch norm
    (batch norm breaks per-sample gradient penalties). ``pack`` k: the critic scores k images
    stacked along channels (PacGAN); batch sizes must then be multiples of k."""

    stackable = True  # standard layers: runs may train as one stacked model

    code_modules = ("harness.builtins.architecture_nets",)

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
        from harness.builtins.architecture_nets import dcgan28_critic, dcgan28_generator

        generator = dcgan28_generator(z_dim, self.width, data_shape[0])
        return generator, packed(partial(dcgan28_critic, self.width), data_shape, self.pack)


@hookimpl
def register_architectures(register):
    register("mlp", MLP)
    register("dcgan28", DCGAN28)
