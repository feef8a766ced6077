"""The critic's value surface on 2-D data (the figure of the WGAN-GP paper's toy experiments):
f evaluated on a grid over the plane, saved per evaluation as ``surface/step_NNNNNNN.npz``, and
drawn in the report as contours with real and generated points, one panel per strategy."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from harness.parts import critic_pack

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


def last_surfaces(client, frame: pd.DataFrame, dest: Path) -> list[tuple[pd.Series, int, dict]]:
    """Per strategy, the last surface of one run (usable runs first, lowest seed):
    (run row, step, arrays)."""
    from mlflow.exceptions import MlflowException

    from harness import tables

    found = []
    ranked = frame.assign(bad=~frame["status"].isin(tables.OK)).sort_values(["bad", "seed"])
    for _, group in ranked.groupby("strategy", sort=False):
        for _, run in group.iterrows():
            try:
                files = [f.path for f in client.list_artifacts(run["run_id"], ARTIFACT_DIR)]
                files = sorted(p for p in files if p.endswith(".npz"))
                if not files:
                    continue
                with mock.patch.dict(os.environ, {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "0"}):
                    into = dest / run["run_id"]
                    into.mkdir()
                    local = client.download_artifacts(run["run_id"], files[-1], str(into))
                with np.load(local) as data:
                    arrays = {k: data[k] for k in data.files}
            except (MlflowException, OSError, ValueError):
                continue
            step = int("".join(c for c in Path(files[-1]).stem if c.isdigit()) or -1)
            found.append((run, step, arrays))
            break
    order = list(dict.fromkeys(frame["strategy"]))
    return sorted(found, key=lambda item: order.index(item[0]["strategy"]))


def surface_figure(client, frame: pd.DataFrame, colors: dict):
    """Contours of each strategy's critic over the plane, real points grey, generated ones in
    the strategy's colour; None when no run logged a surface."""
    from harness import tables
    from harness.report import Figure, _grid, _png

    with tempfile.TemporaryDirectory() as tmp:
        found = last_surfaces(client, frame, Path(tmp))
    if not found:
        return None
    fig, axes = _grid(len(found), width=4.0, height=4.0, cols=3)
    for ax, (run, step, s) in zip(axes, found, strict=True):
        contours = ax.contourf(s["xs"], s["ys"], s["values"], levels=20, cmap="viridis")
        ax.contour(s["xs"], s["ys"], s["values"], levels=20, colors="k", linewidths=0.3)
        fig.colorbar(contours, ax=ax, shrink=0.8)
        ax.scatter(s["real"][:, 0], s["real"][:, 1], s=6, c="white", marker="+", lw=0.6)
        color = colors.get(run["strategy"], "tab:orange")
        ax.scatter(s["fake"][:, 0], s["fake"][:, 1], s=3, color=color, marker="+", lw=0.6)
        ax.set_xlim(s["xs"][0], s["xs"][-1])
        ax.set_ylim(s["ys"][0], s["ys"][-1])
        ax.set_aspect("equal")
        pack = int(s["pack"])
        status = "" if run["status"] in tables.OK else f", {run['status']}"
        packed = f", f(x, …, x) of {pack}" if pack > 1 else ""
        title = f"{run['strategy']}\nseed {run['seed']}, step {step}{status}{packed}"
        ax.set_title(title, fontsize=9)
    return Figure(
        "surface",
        "Critic value surfaces",
        "Contours of the critic f over the plane at the last evaluation (one run per strategy: "
        "the lowest usable seed), real samples white, generated ones in the strategy's "
        "colour. A packing critic is evaluated on packs of copies of one point.",
        _png(fig),
    )
