"""The critic's value surface on 2-D data, logged as a file at every evaluation and drawn by
``harness report`` (contours of f with real and generated points, per strategy)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness.core.hookspecs import hookimpl
from harness.core.parts import Metric


class ValueSurface(Metric):
    """The critic's values on a ``resolution``² grid over the plane, with real and generated
    points, saved as ``surface/step_NNNNNNN.npz`` at every evaluation (2-D data only; the box
    is ±``extent``, by default 1.2 × the data's extent). Logs no numbers."""

    def __init__(
        self,
        resolution: Annotated[int, Field(ge=8, le=1024)] = 128,
        extent: Annotated[float, Field(gt=0, le=1e6)] | None = None,
        points: Annotated[int, Field(ge=1, le=100_000)] = 1000,
    ):
        self.resolution, self.extent, self.points = resolution, extent, points

    def evaluate(self, ctx) -> dict[str, float]:
        if ctx.fake.dim() != 2 or ctx.fake.shape[1] != 2:
            return {}
        from harness.evaluation.surface import ARTIFACT_DIR, critic_surface, surface_npz

        surface = critic_surface(
            ctx.critic, ctx.real.x, ctx.fake, self.resolution, self.extent, self.points
        )
        ctx.artifacts[f"{ARTIFACT_DIR}/step_{ctx.step:07d}.npz"] = surface_npz(surface)
        return {}


@hookimpl
def register_metrics(register):
    register("value_surface", ValueSurface)
