"""What metrics see at an evaluation point (:class:`Context`, the implementation of the
contract's :class:`harness.core.parts.EvalContext`), the one constructor that training and
``harness score`` both use (:func:`open_context`), and the loop that asks each metric."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from harness.core.parts import Dataset, Loss, Metric, Samples, critic_pack
from harness.core.spec import RunSpec
from harness.evaluation.evaluator import Evaluator, mnist_evaluator, uses_full_evaluator
from harness.evaluation.samples import samples_png

EVAL_NOISE_SEED = 1_000_003  # fixed evaluation noise, apart from the training RNG stream


class AbsentCritic(nn.Module):
    """The critic of samples made elsewhere (``harness score``), which have none: NaN scores,
    and a note that a metric asked, so that its critic-based values are left out."""

    def __init__(self):
        super().__init__()
        self.asked = False

    def forward(self, x: Tensor) -> Tensor:
        self.asked = True
        return torch.full((len(x),), float("nan"), device=x.device)


@dataclass
class Context:
    """Everything a metric may look at; expensive pieces are made on first use. ``spec``,
    ``generator`` and ``loss`` are None when scoring samples made elsewhere."""

    spec: RunSpec | None
    dataset: Dataset
    generator: nn.Module | None
    critic: nn.Module
    loss: Loss | None
    real: Samples
    device: torch.device
    data_dir: Path | None = None
    train: Tensor | None = None  # the training split: FID's reference set
    step: int = 0
    fake: Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # path -> bytes, logged per eval
    _test_accuracy: float | None = None

    def evaluator(self) -> Evaluator:
        """The frozen MNIST evaluator on this run's device: the shipped one, or on full MNIST
        the one trained on it where ``harness data train-evaluator`` has made it."""
        return mnist_evaluator(self.device, full=uses_full_evaluator(self.dataset))

    def evaluator_test_accuracy(self) -> float:
        """The evaluator's accuracy on this dataset's test digits (measured once)."""
        if self._test_accuracy is None:
            test = self.dataset.classifier_data(self.data_dir)[1]
            self._test_accuracy = self.evaluator().accuracy(test)
        return self._test_accuracy

    @torch.no_grad()
    def generate(self, n: int, batch_size: int = 1000) -> Tensor:
        gen = torch.Generator(device=self.device).manual_seed(EVAL_NOISE_SEED + self.spec.seed)
        z_dim = self.spec.architecture.z_dim
        z = torch.randn(n, z_dim, generator=gen, device=self.device)
        was_training = self.generator.training
        self.generator.eval()
        out = torch.cat([self.generator(b) for b in z.split(batch_size)])
        self.generator.train(was_training)
        return out

    @torch.no_grad()
    def critic_scores(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """f on ``x`` in chunks. A critic packing k samples (PacGAN) gives one score per k
        samples: chunks are multiples of k and the last ``len(x) % k`` samples are left out."""
        k = critic_pack(self.critic)
        x, batch_size = x[: len(x) - len(x) % k], max(k, batch_size - batch_size % k)
        was_training = self.critic.training
        self.critic.eval()
        out = torch.cat([self.critic(b) for b in x.split(batch_size)])
        self.critic.train(was_training)
        return out


def open_context(
    dataset: Dataset,
    device: torch.device,
    *,
    samples: int,
    data_dir: Path | None = None,
    train: Tensor | None = None,
    test: Samples | None = None,
    spec: RunSpec | None = None,
    generator: nn.Module | None = None,
    critic: nn.Module | None = None,
    loss: Loss | None = None,
) -> Context:
    """The context of one run's evaluations, or of samples made elsewhere (no ``spec``,
    networks or loss: the critic is an :class:`AbsentCritic`): the first ``samples`` test
    samples as the real set, the training split as FID's reference (each split loaded unless
    given)."""
    if test is None:
        test = dataset.load("test", data_dir)
    real = Samples(test.x[:samples].to(device), test.y[:samples].to(device))
    if train is None:
        train = dataset.load("train", data_dir).x.to(device)
    critic = AbsentCritic() if critic is None else critic
    return Context(spec, dataset, generator, critic, loss, real, device, data_dir, train)


def evaluate(ctx: Context, metrics: dict[str, Metric]) -> dict[str, float]:
    """Generate the evaluation samples once and run every metric on them; the sample grid
    and the files metrics attach (value surfaces) are left in ``ctx.artifacts``."""
    start = time.perf_counter()
    ctx.fake = ctx.generate(ctx.spec.eval.samples)
    ctx.artifacts = {}
    values: dict[str, float] = {}
    for metric in metrics.values():
        values.update(metric.evaluate(ctx))
    values["eval_seconds"] = time.perf_counter() - start
    grid = samples_png(ctx.fake, ctx.real.x, ctx.dataset.modes)  # rendered after the timing
    ctx.artifacts = {f"samples/step_{ctx.step:07d}.png": grid, **ctx.artifacts}
    return values
