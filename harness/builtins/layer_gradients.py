"""Per-layer gradient norms and weight histograms of the critic (WGAN-GP, Gulrajani et al.,
2017, Figure 1b–c: a deep critic's gradients vanish or explode under weight clipping, not under
a gradient penalty, and clipping piles the weights up at ±c)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness.core.hookspecs import hookimpl
from harness.core.parts import Metric


class LayerGradients(Metric):
    """Per weight layer of the critic (input side first), the norm of its loss's gradient
    ``grad_norm_layer_01``, …; ``weights_at_bound``, the share of weights within 1 % of their
    layer's largest magnitude; and the weights' histogram, saved as ``layers/step_NNNNNNN.npz``
    for ``harness report``. Measured on ``batch`` real and generated samples."""

    default = False

    def __init__(self, batch: Annotated[int, Field(ge=1, le=100_000)] = 256):
        self.batch = batch

    def evaluate(self, ctx) -> dict[str, float]:
        if ctx.loss is None or ctx.fake is None:  # samples scored without a run
            return {}
        from harness.evaluation.layers import (
            ARTIFACT_DIR,
            at_bound_share,
            evaluation_batch,
            layer_gradient_norms,
            layers_npz,
            weight_histogram,
        )

        real, fake = evaluation_batch(ctx.real.x, ctx.fake, ctx.critic, self.batch)
        norms = layer_gradient_norms(ctx.critic, ctx.loss, real, fake)
        ctx.artifacts[f"{ARTIFACT_DIR}/step_{ctx.step:07d}.npz"] = layers_npz(
            norms, *weight_histogram(ctx.critic)
        )
        values = {f"grad_norm_layer_{i:02d}": v for i, v in enumerate(norms, start=1)}
        return {**values, "weights_at_bound": at_bound_share(ctx.critic)}


@hookimpl
def register_metrics(register):
    register("layer_gradients", LayerGradients)
