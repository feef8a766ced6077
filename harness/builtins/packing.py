"""PacGAN's packing (Lin et al., 2018) for any critic: the critic scores k samples at once,
concatenated along their first axis (features of 2-D points, channels of images).

Torch modules are built on demand (``packed``), so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any


def packed_shape(data_shape: tuple[int, ...], pack: int) -> tuple[int, ...]:
    """The shape one packed input has: (k·d,) for vectors, (k·C, H, W) for images."""
    return (pack * data_shape[0], *data_shape[1:])


def packed(build_critic: Callable[[tuple[int, ...]], Any], data_shape: tuple[int, ...], pack: int):
    """A critic for ``data_shape`` samples that packs them ``pack`` at a time: the inner critic
    is built by ``build_critic`` for the packed shape. ``pack`` 1 returns it unwrapped."""
    critic = build_critic(packed_shape(data_shape, pack))
    if pack == 1:
        return critic
    return packed_class()(critic, pack)


@cache
def packed_class() -> type:
    """The packing module class, made once (torch imported on first use): every packed critic
    is an instance of the same class, so members of a stack share it."""
    from torch import Tensor, nn

    class Packed(nn.Module):
        """Scores packs of ``pack`` consecutive samples: (N, *shape) -> (N / pack,). Real packs
        hold real samples only and fake packs fake ones, since the trainer scores them in
        separate calls. A batch that is not a multiple of ``pack`` is an error."""

        def __init__(self, critic: nn.Module, pack: int):
            super().__init__()
            self.critic, self.pack = critic, pack

        def forward(self, x: Tensor) -> Tensor:
            n = x.shape[0]
            if n % self.pack:
                raise ValueError(
                    f"a critic packing {self.pack} samples was called on {n}, not a whole "
                    f"number of packs: every caller (the trainer, a metric, a constraint that "
                    f"wraps this critic) must pass multiples of {self.pack}; the suite's "
                    "train.batch_size and eval.samples are checked before training"
                )
            return self.critic(x.reshape(n // self.pack, self.pack * x.shape[1], *x.shape[2:]))

    return Packed
