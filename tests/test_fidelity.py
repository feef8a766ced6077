from pathlib import Path

import pytest
import torch
from conftest import TOY_SUITE

from harness.builtins.datasets import MNIST, StackedMNIST
from harness.core.errors import SuiteError
from harness.evaluation.evaluator import mnist_evaluator
from harness.evaluation.fidelity import (
    MissingWeightsError,
    fidelity_metrics,
    inception_weights,
    kid_subset_size,
    register_evaluator_extractor,
    to_uint8,
)
from harness.run.loading import load_suite

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mnist():
    data = MNIST()
    train = data.load("train")
    evaluator = mnist_evaluator(CPU)
    name = register_evaluator_extractor(f"test-{evaluator.fingerprint}", evaluator.net)
    return train, name


def test_to_uint8():
    assert to_uint8(torch.tensor([-1.0, 0.0, 1.0, 7.0])).tolist() == [0, 128, 255, 255]


def test_fid_orders_real_below_one_class_and_noise(mnist):
    train, name = mnist
    x, y = train
    a, b = x[0::2][:1500], x[1::2][:1500]
    ones = x[y == 1]
    noise = torch.rand(1500, 1, 28, 28) * 2 - 1
    floor = fidelity_metrics(a, b, extractor=name, device=CPU)
    one = fidelity_metrics(ones, b[: len(ones)], extractor=name, device=CPU)
    rand = fidelity_metrics(noise, b, extractor=name, device=CPU)
    assert floor["fid"] < 0.05 * one["fid"] and floor["fid"] < 0.05 * rand["fid"]
    # measured: FID 3.4 / 761 / 1941, recall 0.89 / 0.50 / 0.0 (precision alone misses this)
    assert floor["recall"] > 0.8 and one["recall"] < 0.6 and rand["recall"] < 0.1
    assert floor["kid"] < one["kid"] and floor["kid"] < rand["kid"]


def test_kid_adapts_to_small_sets_and_stacked_inputs_work(mnist):
    train, name = mnist
    small = fidelity_metrics(train.x[:50], train.x[50:100], extractor=name, device=CPU)
    assert {"fid", "kid", "kid_std", "precision", "recall"} <= set(small)
    assert small["kid_std"] > 0  # subsets of half the set, not all the same whole set
    assert [kid_subset_size(n) for n in (10, 200, 1000, 1001, 5000)] == [5, 100, 500, 1000, 1000]
    stacked = StackedMNIST(n=1000)
    a, b = stacked.load("train").x, stacked.load("test").x
    same = fidelity_metrics(a, b, extractor=name, device=CPU, metrics=("fid",))
    noise = torch.rand(1000, 3, 28, 28) * 2 - 1
    far = fidelity_metrics(noise, b, extractor=name, device=CPU, metrics=("fid",))
    assert 0 < same["fid"] < 0.1 * far["fid"]


def test_real_statistics_are_cached(mnist, tmp_path):
    train, name = mnist
    kwargs = dict(extractor=name, device=CPU, real_cache_key="ref-test", cache_dir=tmp_path)
    first = fidelity_metrics(train.x[:1000], train.x[1000:2000], **kwargs)
    assert list(tmp_path.iterdir())
    # the cached statistics are read, not recomputed: other reals under the same key change
    # nothing (which is why harness.metrics.fidelity keys them by the exact samples)
    second = fidelity_metrics(train.x[:1000], train.x[2000:3000], **kwargs)
    assert second["fid"] == pytest.approx(first["fid"], rel=1e-6)
    kwargs["real_cache_key"] = "other"
    third = fidelity_metrics(train.x[:1000], train.x[2000:3000], **kwargs)
    assert third["fid"] != pytest.approx(first["fid"], rel=1e-6)


def test_inception_without_weights_is_one_clear_line(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("network touched")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.delenv("HARNESS_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match="HARNESS_INCEPTION_WEIGHTS") as exc:
        inception_weights(None)
    assert "\n" not in str(exc.value)
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "w.pth")):
        inception_weights(str(tmp_path / "w.pth"))
    (tmp_path / "w.pth").write_bytes(b"x")
    assert inception_weights(str(tmp_path / "w.pth")) == tmp_path / "w.pth"


def test_a_suite_asking_for_inception_fid_without_weights_fails_validation(
    write_suite, monkeypatch
):
    monkeypatch.delenv("HARNESS_INCEPTION_WEIGHTS", raising=False)
    path = write_suite(TOY_SUITE.replace("metrics: [mode_coverage]", "metrics: [fid_inception]"))
    with pytest.raises(SuiteError, match="metrics.0: metric 'fid_inception': Inception-v3 weights"):
        load_suite(path)


def test_a_planted_pickle_in_the_statistics_cache_does_not_run(mnist, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_resume import Planted

    train, name = mnist
    kwargs = dict(extractor=name, device=CPU, real_cache_key="ref", cache_dir=tmp_path)
    first = fidelity_metrics(train.x[:200], train.x[200:400], **kwargs)
    cached = sorted(tmp_path.iterdir())
    assert cached  # torch-fidelity's own files, loaded back with weights_only=False
    marker = tmp_path.parent / "code-ran"
    for path in cached:
        torch.save({"mu": Planted(marker)}, path)
    again = fidelity_metrics(train.x[:200], train.x[200:400], **kwargs)
    assert not marker.exists()
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-6)  # recomputed, not read
