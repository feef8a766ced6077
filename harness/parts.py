"""The part interfaces plugins implement: Loss, Constraint, Architecture, Dataset, Metric.

Parts are plain classes. Suite parameters become constructor keyword arguments, so the
constructor signature (with type hints and defaults) *is* the part's parameter schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, NamedTuple

if TYPE_CHECKING:  # torch is imported where parts train, never to list or validate them
    from torch import Tensor, nn

    from harness.evaluation import EvalContext

Output = Literal["logit", "score"]


class Loss:
    """A GAN objective. ``output`` says what the critic's last layer means: a BCE ``logit``
    or a linear Wasserstein ``score``."""

    output: ClassVar[Output] = "score"

    def critic_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        raise NotImplementedError


class Constraint:
    """A Lipschitz strategy. Every hook is optional and a no-op by default.

    ``default_optimizer`` is the optimiser its paper used; a suite strategy may override it.
    """

    default_optimizer: ClassVar[dict] = {"name": "adam", "lr": 2e-4, "betas": (0.5, 0.999)}

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        """Structural change to the critic (spectral norm, orthonormal layers, ...)."""
        return critic

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        """A term added to the critic loss (gradient penalty, ...); ``None`` for none."""
        return None

    def after_critic_step(self, critic: nn.Module) -> None:
        """A projection after each critic optimiser step (weight clipping, ...)."""


class Architecture:
    """Builds a generator ``z -> x`` and a critic ``x -> (N,)`` for a data shape.

    ``batch_multiple``: training batches and evaluation sample counts must be multiples of it
    (a PacGAN critic packing k samples scores k at a time: its N outputs are N/k); validated
    before anything trains."""

    batch_multiple: int = 1

    def build(
        self, z_dim: int, data_shape: tuple[int, ...], output: Output
    ) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def check(self, data_shape: tuple[int, ...]) -> None:
        """Cheap check, run by ``validate`` when the dataset declares its ``shape``, that
        ``build`` accepts it; raise ``ValueError`` with a one-line reason. Default: any."""


def critic_pack(critic: nn.Module) -> int:
    """How many samples a critic scores at once: k for a critic packing k (PacGAN), else 1."""
    return int(getattr(critic, "pack", 1))


@dataclass(frozen=True)
class GaussianModes:
    """Modes of a 2-D Gaussian mixture: ``centers`` (K, 2) and the common ``sigma``."""

    centers: Tensor
    sigma: float

    @property
    def count(self) -> int:
        return len(self.centers)


@dataclass(frozen=True)
class ClassModes:
    """Modes given by class labels: ``n_classes`` per channel, ``channels`` stacked digits."""

    n_classes: int
    channels: int = 1

    @property
    def count(self) -> int:
        return self.n_classes**self.channels


class Samples(NamedTuple):
    """Data samples ``x`` (N, *shape) and their mode labels ``y`` (N,)."""

    x: Tensor
    y: Tensor


class Dataset:
    """A data set: ``load`` returns samples scaled to the generator's output range."""

    modes: GaussianModes | ClassModes | None = None
    shape: tuple[int, ...] | None = None  # one sample's, if known before loading: validated

    def load(self, split: Literal["train", "test"], data_dir: Path | None = None) -> Samples:
        raise NotImplementedError

    def check(self, data_dir: Path | None = None) -> None:
        """Cheap checks, run by ``validate`` and before any training, that ``load`` will find
        its data (files under ``data_dir``, ...); raise ``HarnessError`` with a one-line
        reason. Default: nothing to check."""

    def classifier_data(self, data_dir: Path | None = None) -> tuple[Samples, Samples]:
        """Single-channel (train, test) digits for the evaluator of ``ClassModes`` data."""
        return self.load("train", data_dir), self.load("test", data_dir)


class Metric:
    """A measurement. ``evaluate`` runs at every evaluation point, ``summarize`` once at the
    end over the logged history. ``directions`` tells tables whether higher or lower is better.
    """

    directions: ClassVar[dict[str, Literal["max", "min"]]] = {}
    default: ClassVar[bool] = True  # measured when a suite lists no metrics

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        return {}

    def summarize(self, ctx: EvalContext, history: dict[str, list[tuple[int, float]]]) -> dict:
        return {}


KINDS: dict[str, type] = {
    "loss": Loss,
    "constraint": Constraint,
    "architecture": Architecture,
    "dataset": Dataset,
    "metric": Metric,
}

__all__ = [
    "Architecture",
    "ClassModes",
    "Constraint",
    "Dataset",
    "GaussianModes",
    "KINDS",
    "Loss",
    "Metric",
    "Samples",
]
