"""The part interfaces plugins implement: Loss, Constraint, Architecture, Dataset, Metric.

Parts are plain classes. Suite parameters become constructor keyword arguments, so the
constructor signature (with type hints and defaults) *is* the part's parameter schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, Protocol

if TYPE_CHECKING:  # torch is imported where parts train, never to list or validate them
    import torch
    from torch import Tensor, nn

    from harness.core.spec import RunSpec

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

    ``members`` says whether runs using it may train as one stacked model (several runs'
    critics as one module, batches member-major: member m's samples are rows m·B … m·B+B−1):

    - ``"elementwise"``: its hooks work unchanged on the stacked critic and member-major
      batches: per-sample terms reduced by ``.mean()`` (each member gets its own mean),
      random tensors with one row per sample (each member's drawn from its own stream),
      element-wise projections of the parameters. No batch-wide statistic (``std()`` over
      the batch), no draw of another shape (refused).
    - ``"native"``: it handles stacked critics itself (its ``wrap_critic`` modules run
      under ``torch.func.vmap``, its penalty returns one value per member).
    - ``None`` (the default): runs using it train alone.

    The testing kit trains a declared constraint stacked and per run and requires them to agree.
    """

    default_optimizer: ClassVar[dict] = {"name": "adam", "lr": 2e-4, "betas": (0.5, 0.999)}
    members: ClassVar[Literal["elementwise", "native"] | None] = None

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
    before anything trains.

    ``per_sample_critic``: the critic scores each sample independently of the others in its
    batch. A critic with batch norm (PacGAN's DCGAN) sets it False: the testing kit then skips
    that check, and a suite pairing it with a penalty constraint (per-sample input gradients,
    as WGAN-GP's) is warned at validation.

    ``stackable``: the networks ``build`` returns run under ``torch.func.vmap`` with
    ``functional_call`` (standard layers, batch norm included; no data-dependent Python
    control flow, no ``out=`` operations), and the networks of one instance's builds have the
    same structure whatever the seed, so several runs' networks train as one stacked model.
    Undeclared: its runs train alone."""

    batch_multiple: int = 1
    per_sample_critic: bool = True
    stackable: ClassVar[bool] = False

    def build(
        self, z_dim: int, data_shape: tuple[int, ...], output: Output
    ) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def check(self, data_shape: tuple[int, ...]) -> None:
        """Cheap check, run by ``validate`` when the dataset declares its ``shape``, that
        ``build`` accepts it; raise ``ValueError`` with a one-line reason. Default: any."""


def critic_pack(critic: nn.Module) -> int:
    """How many samples a critic scores at once: k for a critic packing k (PacGAN), else 1.
    Read from the critic or, when a constraint wrapped it, from the module inside that
    declares ``pack``: a wrapper need not copy the attribute."""
    modules = critic.modules() if hasattr(critic, "modules") else [critic]
    return int(next((m.pack for m in modules if hasattr(m, "pack")), 1))


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


class EvalContext(Protocol):
    """What a metric sees at an evaluation point (and, for ``summarize``, at the end of a run);
    the harness's evaluation layer implements it. Expensive pieces (the evaluator, its test
    accuracy) are made on first use.

    The critic is called under ``torch.no_grad()`` by :meth:`critic_scores`; a metric that
    differentiates it (the Lipschitz diagnostics) enables grad itself. When samples made
    elsewhere are scored (``harness score``) there is no generator, no loss and no run: ``spec``
    is None and the critic gives NaN scores."""

    spec: RunSpec | None  # the run's resolved config
    dataset: Dataset
    generator: nn.Module | None
    critic: nn.Module
    loss: Loss | None
    real: Samples  # the evaluation's real samples (test split), on ``device``
    device: torch.device
    data_dir: Path | None
    train: Tensor | None  # the training split: the reference set of FID
    step: int
    fake: Tensor | None  # this evaluation's generated samples
    timings: dict[str, float]  # at ``summarize``: train_seconds, steps, critic_forwards, ...
    artifacts: dict[str, bytes]  # files a metric attaches at this evaluation, by path

    def evaluator(self) -> Any:
        """The frozen MNIST evaluator on this context's device."""

    def evaluator_test_accuracy(self) -> float:
        """The evaluator's accuracy on this dataset's test digits."""

    def generate(self, n: int, batch_size: int = 1000) -> Tensor:
        """``n`` samples from fixed evaluation noise (apart from the training RNG stream)."""

    def critic_scores(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """The critic's scores on ``x`` in chunks, under ``no_grad`` (one per pack of k)."""


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
    "EvalContext",
    "GaussianModes",
    "KINDS",
    "Loss",
    "Metric",
    "Output",
    "Samples",
    "critic_pack",
]
