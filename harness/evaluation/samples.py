"""Pictures of samples: an image grid for image data, a scatter over the modes for 2-D toys."""

from __future__ import annotations

import io

import torch
from torch import Tensor

from harness.core.parts import GaussianModes


def samples_png(fake: Tensor, real: Tensor, modes=None, n: int = 64) -> bytes:
    """PNG bytes showing generated samples (with real ones and mode centres on toys)."""
    if fake.dim() == 4:
        return _image_grid(fake[:n])
    return _scatter(fake, real, modes)


def _image_grid(x: Tensor) -> bytes:
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(
        x.detach().float().cpu().clamp(-1, 1), nrow=8, normalize=True, value_range=(-1, 1)
    )
    array = (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _scatter(fake: Tensor, real: Tensor, modes) -> bytes:
    """The scatter on a fixed layout: a bare :class:`~matplotlib.figure.Figure` (no pyplot
    state), markers as lines, no tight bounding box (which draws the figure twice); it is
    drawn at every evaluation of every toy run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=100)
    ax = fig.add_axes((0.1, 0.07, 0.87, 0.9))
    real, fake = real[:2500].cpu().numpy(), fake[:2500].detach().cpu().numpy()
    dots = {"ls": "", "marker": "o", "ms": 2, "mew": 0}
    ax.plot(real[:, 0], real[:, 1], c="0.7", label="real", **dots)
    ax.plot(fake[:, 0], fake[:, 1], c="tab:orange", label="generated", **dots)
    if isinstance(modes, GaussianModes):
        c = modes.centers.numpy()
        ax.plot(c[:, 0], c[:, 1], ls="", marker="x", c="k", ms=4, label="centres")
    lim = max(2.5, 1.15 * float(abs(real).max()))  # PacGAN's grid reaches ±4
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    ax.legend(loc="upper right", fontsize=6, markerscale=2)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
