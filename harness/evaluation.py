"""What metrics see at an evaluation point, and the loop that asks each metric."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from harness.evaluator import Evaluator, mnist_evaluator
from harness.parts import Dataset, Loss, Metric, Samples, critic_pack
from harness.suite import RunSpec

EVAL_NOISE_SEED = 1_000_003  # fixed evaluation noise, apart from the training RNG stream


@dataclass
class EvalContext:
    """Everything a metric may look at; expensive pieces are made on first use."""

    spec: RunSpec
    dataset: Dataset
    generator: nn.Module
    critic: nn.Module
    loss: Loss
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
        """The frozen MNIST evaluator (shipped weights), on this run's device."""
        return mnist_evaluator(self.device)

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


def evaluate(ctx: EvalContext, metrics: dict[str, Metric]) -> dict[str, float]:
    """Generate the evaluation samples once and run every metric on them."""
    start = time.perf_counter()
    ctx.fake = ctx.generate(ctx.spec.eval.samples)
    ctx.artifacts = {}
    values: dict[str, float] = {}
    for metric in metrics.values():
        values.update(metric.evaluate(ctx))
    values["eval_seconds"] = time.perf_counter() - start
    return values
