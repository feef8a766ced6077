"""Mode coverage: which modes generated samples land in, and how evenly.

Toys follow PacGAN (Lin et al., 2018): a sample is high-quality when within 3σ of a centre, a
mode is covered when it gets at least ``min_count`` high-quality samples, and the reverse KL
compares the histogram of high-quality samples over modes with the uniform one. Class modes
(MNIST) use the evaluator's predicted labels over all samples.
"""

import math

import torch
from torch import Tensor


def kl_to_uniform(counts: Tensor) -> float:
    """KL(p ‖ uniform) of a histogram; log K (a point mass) for an empty one."""
    k = counts.numel()
    total = counts.sum()
    if total == 0:
        return math.log(k)
    p = counts[counts > 0].double() / total
    return float((p * (p * k).log()).sum())


def gaussian_coverage(x: Tensor, centers: Tensor, sigma: float, min_count: int = 1) -> dict:
    """PacGAN toy protocol over 2-D samples ``x`` (N, 2)."""
    distances = torch.cdist(x.float(), centers.to(x.device).float())
    nearest, mode = distances.min(dim=1)
    hq = nearest <= 3 * sigma
    counts = torch.bincount(mode[hq], minlength=len(centers)).cpu()
    return {
        "modes_covered": int((counts >= min_count).sum()),
        "hq_fraction": float(hq.float().mean()),
        "reverse_kl": kl_to_uniform(counts),
    }


def class_coverage(labels: Tensor, n_modes: int, min_share: float = 0.1) -> dict:
    """Coverage over predicted labels (N,): a mode counts when it gets at least ``min_share``
    of its uniform share N/K (and at least one sample), which discounts classifier errors."""
    counts = torch.bincount(labels.flatten().cpu(), minlength=n_modes)
    threshold = max(1.0, min_share * len(labels) / n_modes)
    return {
        "modes_covered": int((counts >= threshold).sum()),
        "kl_to_uniform": kl_to_uniform(counts),
    }
