"""Per-layer views of a critic (WGAN-GP's Figure 1b–c): the norm of the gradient of the critic's
training loss with respect to each weight layer, input side first, and the histogram of its
weights. Under weight clipping a deep critic's gradients vanish or explode with depth and its
weights pile up at ±c; under a gradient penalty they do neither."""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor, nn

from harness.core.parts import Loss, critic_pack

ARTIFACT_DIR = "layers"
BINS = 101


def weight_layers(critic: nn.Module) -> list[tuple[str, Tensor]]:
    """The critic's weight matrices and kernels (parameters of 2 or more dimensions) in module
    order, input side first; a parametrized weight (spectral norm) by its original."""
    return [(name, p) for name, p in critic.named_parameters() if p.dim() >= 2]


def layer_gradient_norms(critic: nn.Module, loss: Loss, real: Tensor, fake: Tensor) -> list[float]:
    """‖∂L/∂W‖ for each weight layer W, L the critic's loss on these real and fake samples
    (without a constraint's penalty: the gradient the loss itself sends down the layers)."""
    layers = [p for _, p in weight_layers(critic)]
    with torch.enable_grad():
        value = loss.critic_loss(critic(real).float(), critic(fake.detach()).float())
        grads = torch.autograd.grad(value, layers, allow_unused=True)
    return [float(g.norm()) if g is not None else 0.0 for g in grads]


def at_bound_share(critic: nn.Module) -> float:
    """The share of weights within 1 % of their layer's largest magnitude: near 2/n for
    Gaussian-like weights, towards 1 when clipping has driven them to ±c."""
    layers = [p.detach().flatten().abs() for _, p in weight_layers(critic)]
    at = sum(int((w >= 0.99 * w.max()).sum()) for w in layers if w.numel())
    return at / max(1, sum(w.numel() for w in layers))


def weight_histogram(critic: nn.Module, bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts) of all weight-layer entries over ±their largest magnitude."""
    weights = torch.cat([p.detach().flatten() for _, p in weight_layers(critic)]).float().cpu()
    edge = float(weights.abs().max()) or 1.0
    counts = torch.histc(weights, bins, -edge, edge)
    return np.linspace(-edge, edge, bins + 1), counts.numpy()


def evaluation_batch(real: Tensor, fake: Tensor, critic: nn.Module, size: int):
    """The first ``size`` real and fake samples, cut to whole packs of the critic."""
    n = min(size, len(real), len(fake))
    n -= n % critic_pack(critic)
    return real[:n], fake[:n]


def layers_npz(norms: list[float], edges: np.ndarray, counts: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, norms=np.array(norms), edges=edges, counts=counts)
    return buffer.getvalue()
