"""Built-in metrics, registered like any third-party metric."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from harness.core.hookspecs import hookimpl
from harness.core.parts import ClassModes, GaussianModes, Metric, critic_pack

if TYPE_CHECKING:  # the measuring code (torch, POT) is imported when a metric runs
    from harness.core.parts import EvalContext


def cache_dir() -> Path:
    """Where cached real-data statistics live: :func:`harness.evaluation.evaluator.cache_dir`."""
    from harness.evaluation.evaluator import cache_dir

    return cache_dir()


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

    def __init__(
        self,
        min_count: Annotated[int, Field(ge=1)] = 1,
        class_min_share: Annotated[float, Field(gt=0, le=1)] = 0.1,
    ):
        self.min_count, self.class_min_share = min_count, class_min_share

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        import torch

        from harness.evaluation.coverage import class_coverage, gaussian_coverage

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
            return {**values, "evaluator_test_accuracy": ctx.evaluator_test_accuracy()}
        return {}


class Transport(Metric):
    """Exact W1 between real and generated samples (POT) beside the critic's estimate
    E f(real) − E f(fake); their gap shows how far the critic is from the optimal 1-Lipschitz
    potential (weight clipping shrinks it by the unknown Lipschitz constant)."""

    directions = {"w1_exact": "min", "w1_gap": "min"}

    def __init__(self, max_samples: Annotated[int, Field(ge=2, le=20_000)] = 2500):
        self.max_samples = max_samples

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        from harness.evaluation.transport import exact_w1

        real, fake = ctx.real.x[: self.max_samples], ctx.fake[: self.max_samples]
        exact = exact_w1(real, fake)
        estimate = (ctx.critic_scores(real).mean() - ctx.critic_scores(fake).mean()).item()
        return {"w1_exact": exact, "w1_critic": estimate, "w1_gap": abs(exact - estimate)}


QUALITY_CURVES = ("fid_mnist", "fid", "kl_to_uniform", "reverse_kl")


class Stability(Metric):
    """Training stability from the logged history: best vs final quality and their gap, area
    under the quality curve, oscillation of the last evaluations, steps to a threshold, and the
    generator's gradient norm over training (vanishing gradients)."""

    directions = {
        "stability_best_final_gap": "min",
        "stability_auc": "min",
        "stability_oscillation": "min",
    }  # no direction for grad_norm_generator_*: its scale depends on the loss, not on quality

    def __init__(
        self,
        curve: str = "auto",
        threshold: float | None = None,
        tail: Annotated[int, Field(ge=1, le=10_000)] = 3,
    ):
        self.curve, self.threshold, self.tail = curve, threshold, tail

    def summarize(self, ctx: EvalContext, history: dict) -> dict[str, float]:
        out = {}
        grads = [v for _, v in history.get("grad_norm_generator", [])]
        if grads:
            out["grad_norm_generator_mean"] = sum(grads) / len(grads)
            out["grad_norm_generator_last"] = grads[-1]
        names = QUALITY_CURVES if self.curve == "auto" else (self.curve,)
        name = next((n for n in names if history.get(n)), None)
        if name is None:
            return out
        from harness.evaluation.stability import curve_stability

        summary = curve_stability(history[name], tail=self.tail, threshold=self.threshold)
        out.update({f"stability_{k}": v for k, v in summary.items()})
        return out


class Cost(Metric):
    """What a strategy costs: seconds per generator step (training only), critic forward
    passes per generator step, and peak memory (CUDA allocator on GPU, process RSS on CPU)."""

    directions = {"sec_per_step": "min", "critic_passes_per_step": "min", "peak_memory_mb": "min"}

    def summarize(self, ctx: EvalContext, history: dict) -> dict[str, float]:
        t = ctx.timings
        steps = max(t.get("steps", 0), 1)
        return {
            "critic_passes_per_step": t.get("critic_forwards", 0) / steps,
            "peak_memory_mb": t.get("peak_memory_mb", 0.0),
        }


class Lipschitz(Metric):
    """Lipschitz diagnostics of the critic: gradient norms on interpolates, real and fake
    points, an empirical lower bound, per-layer spectral norms (true conv operator norms) and
    their product as an upper bound."""

    directions = {"grad_norm_interp_frac_above_1": "min", "lipschitz_upper_bound": "min"}

    def __init__(self, samples: Annotated[int, Field(ge=2, le=10**6)] = 512):
        self.samples = samples

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        from harness.evaluation.lipschitz import lipschitz_diagnostics

        n = min(self.samples, len(ctx.real.x), len(ctx.fake))  # interpolates pair them up
        n -= n % critic_pack(ctx.critic)  # a packing critic scores whole packs
        real, fake = ctx.real.x[:n], ctx.fake[:n]
        return lipschitz_diagnostics(ctx.critic, real, fake, seed=ctx.step)


class Fidelity(Metric):
    """FID, KID and precision/recall (torch-fidelity) in the feature space of the harness's
    MNIST evaluator (not Inception), against the training split; named ``*_mnist``. Logged with
    the sample count and the real-vs-real floor (two disjoint halves of the reference)."""

    directions = {
        "fid_mnist": "min",
        "kid_mnist": "min",
        "precision_mnist": "max",
        "recall_mnist": "max",
        "f_score_mnist": "max",
    }

    def __init__(self, kid: bool = True, prc: bool = True):
        self.measures = ("fid",) + ("kid",) * kid + ("prc",) * prc

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        from harness.evaluation.fidelity import evaluator_fidelity

        if not isinstance(ctx.dataset.modes, ClassModes):
            return {}
        return evaluator_fidelity(
            ctx.fake,
            ctx.train,
            ctx.evaluator(),
            device=ctx.device,
            metrics=self.measures,
            cache_dir=cache_dir() / "fidelity",
        )


class InceptionFID(Metric):
    """Classic FID with Inception-v3 features, only from a local weights file (``weights`` or
    $HARNESS_INCEPTION_WEIGHTS); a missing file is a validation error, never a download."""

    directions = {"fid_inception": "min"}
    default = False

    def __init__(self, weights: str | None = None):
        from harness.evaluation.fidelity import inception_weights

        self.weights = inception_weights(weights)

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        from harness.evaluation.fidelity import inception_fid

        n = min(len(ctx.fake), len(ctx.train))
        fid = inception_fid(ctx.fake[:n], ctx.train[:n], weights=self.weights, device=ctx.device)
        return {"fid_inception": fid, "fid_inception_samples": float(n)}


@hookimpl
def register_metrics(register):
    register("mode_coverage", ModeCoverage)
    register("transport", Transport)
    register("stability", Stability)
    register("cost", Cost)
    register("lipschitz", Lipschitz)
    register("fid", Fidelity)
    register("fid_inception", InceptionFID)
