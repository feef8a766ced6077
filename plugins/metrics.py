"""Built-in metrics, registered like any third-party metric."""

import torch

import harness
from harness.evaluation import EvalContext
from harness.metrics.coverage import class_coverage, gaussian_coverage
from harness.parts import ClassModes, GaussianModes, Metric


class ModeCoverage(Metric):
    """Modes covered and how evenly: PacGAN's protocol on toys (high-quality share within
    3σ, reverse KL), evaluator-predicted classes on MNIST-like data (KL to uniform)."""

    directions = {
        "modes_covered": "max",
        "hq_fraction": "max",
        "reverse_kl": "min",
        "kl_to_uniform": "min",
        "evaluator_test_accuracy": "max",
    }

    def __init__(self, min_count: int = 1, class_min_share: float = 0.1):
        self.min_count, self.class_min_share = min_count, class_min_share

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        modes = ctx.dataset.modes
        if isinstance(modes, GaussianModes):
            return gaussian_coverage(ctx.fake, modes.centers, modes.sigma, self.min_count)
        if isinstance(modes, ClassModes):
            evaluator = ctx.evaluator()
            labels = evaluator.predict(ctx.fake)
            if labels.dim() == 2:  # stacked digits: one mode per tuple of channel labels
                weights = modes.n_classes ** torch.arange(labels.shape[1] - 1, -1, -1)
                labels = (labels * weights.to(labels.device)).sum(1)
            values = class_coverage(labels, modes.count, self.class_min_share)
            return {**values, "evaluator_test_accuracy": evaluator.test_accuracy}
        return {}


@harness.hookimpl
def register_metrics(register):
    register("mode_coverage", ModeCoverage)
