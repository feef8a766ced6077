"""The critic's value surface on 2-D data (the figure of the WGAN-GP paper's toy experiments):
f evaluated on a grid over the plane, saved per evaluation as ``surface/step_NNNNNNN.npz``;
``harness report`` draws it (:func:`harness.analysis.figures.surface_figure`)."""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor, nn

from harness.core.parts import critic_pack

ARTIFACT_DIR = "surface"


@torch.no_grad()
def critic_surface(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    resolution: int = 128,
    extent: float | None = None,
    points: int = 1000,
) -> dict[str, np.ndarray]:
    """f on a ``resolution``² grid over [−extent, extent]² (by default 1.2 × the largest
    coordinate of the real samples and of 99 % of the generated ones), with ``points`` real
    and generated samples. A critic that packs k samples (PacGAN) is shown as f(x, …, x), the
    pack of k copies of each grid point. ``values[i, j]`` is f at (xs[j], ys[i])."""
    if extent is None:
        spread = max(real.abs().max().item(), torch.quantile(fake.abs().max(1).values, 0.99))
        extent = 1.2 * float(spread)
    axis = torch.linspace(-extent, extent, resolution, device=real.device)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    pack = critic_pack(critic)
    was_training = critic.training
    critic.eval()
    try:
        values = torch.cat([critic(b.repeat_interleave(pack, 0)) for b in grid.split(4096)])
    finally:
        critic.train(was_training)
    return {
        "xs": axis.cpu().numpy(),
        "ys": axis.cpu().numpy(),
        "values": values.float().reshape(resolution, resolution).cpu().numpy(),
        "real": real[:points].float().cpu().numpy(),
        "fake": fake[:points].float().cpu().numpy(),
        "pack": np.array(pack),
    }


def surface_npz(surface: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **surface)
    return buffer.getvalue()
