"""The frozen MNIST evaluator: shipped weights and their hash, the training script reproducing
them, thread-independence of its predictions and of the FID floor, the `fid` metric's caches,
and the evaluation protocol id."""

from types import SimpleNamespace

import pytest
import torch

from harness.builtins.datasets import MNIST, Ring8, StackedMNIST
from harness.builtins.metrics import Fidelity
from harness.core.errors import HarnessError
from harness.evaluation import fidelity
from harness.evaluation.evaluator import (
    WEIGHTS,
    WEIGHTS_SHA256,
    evaluation_protocol,
    mnist_evaluator,
    read_weights,
    state_sha256,
)
from harness.run.provenance import torch_threads

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    data = MNIST()
    return data.load("train"), data.load("test")


def test_shipped_weights_match_their_hash_and_a_changed_file_is_refused(tmp_path):
    saved = read_weights()
    assert state_sha256(saved["state_dict"]) == WEIGHTS_SHA256
    assert mnist_evaluator().sha256 == WEIGHTS_SHA256
    assert 100_000 < WEIGHTS.stat().st_size < 5_000_000
    tampered = {k: v.clone() for k, v in saved["state_dict"].items()}
    tampered["head.bias"][0] += 1e-6
    path = tmp_path / "weights.pt"
    torch.save(saved | {"state_dict": tampered}, path)
    with pytest.raises(HarnessError, match="sha256 .* expected 995d7f976c8e"):
        read_weights(path)
    with pytest.raises(HarnessError, match="missing"):
        read_weights(tmp_path / "nowhere.pt")


def test_hash_is_canonical_not_file_bytes():
    state = read_weights()["state_dict"]
    renamed = {f"x.{k}": v for k, v in state.items()}
    assert state_sha256(renamed) != WEIGHTS_SHA256  # names count
    assert state_sha256({k: v.clone() for k, v in state.items()}) == WEIGHTS_SHA256


@pytest.mark.slow
def test_training_script_reproduces_the_shipped_evaluator(tmp_path, digits):
    """Slow (~30 s of one CPU): retrains the evaluator as the shipped one was. Bit for bit on
    the machine that made it; on another CPU of the same instruction set and torch build the
    kernels may sum in another order (seen on an AMD EPYC: weights 0.18 apart after 8 epochs),
    so there the network must classify every test digit as the shipped one does."""
    from harness.evaluation.evaluator import Evaluator, EvaluatorNet
    from harness.evaluator_training import main

    trained_with = read_weights()["trained_with"]
    here = (str(torch.__version__), torch.backends.cpu.get_cpu_capability())
    if here != (trained_with["torch"], trained_with["cpu_capability"]):
        pytest.skip(
            f"weights trained on torch {trained_with['torch']} "
            f"{trained_with['cpu_capability']}; float bits may differ on {here}"
        )
    threads = torch.get_num_threads()
    main(["--out", str(tmp_path / "w.pt")])
    assert torch.get_num_threads() == threads  # restored
    retrained = read_weights(tmp_path / "w.pt", sha256=None)
    if retrained["sha256"] == WEIGHTS_SHA256:
        return
    net = EvaluatorNet(retrained["n_classes"])
    net.load_state_dict(retrained["state_dict"])
    ours = Evaluator(net.eval(), retrained["sha256"], retrained["test_accuracy"])
    test = digits[1]
    assert torch.equal(ours.predict(test.x), mnist_evaluator().predict(test.x))


def test_predictions_and_fid_floor_do_not_depend_on_the_thread_count(digits, monkeypatch):
    train, test = digits
    evaluator = mnist_evaluator()
    name = fidelity.register_evaluator_extractor(f"threads-{evaluator.fingerprint}", evaluator.net)
    results = {}
    for threads in (1, 2):
        monkeypatch.setattr(fidelity, "_FLOORS", {})
        with torch_threads(threads):
            floor = fidelity.real_floor(train.x, 1000, extractor=name, device=CPU)
            results[threads] = evaluator.predict(test.x), floor, evaluator.accuracy(test)
    (p1, floor1, acc1), (p2, floor2, acc2) = results[1], results[2]
    assert torch.equal(p1, p2) and acc1 == acc2 == evaluator.trained_accuracy
    # features agree to ~4e-6 (oneDNN's blocking depends on the thread count); the floor to 1e-7
    assert floor2 == pytest.approx(floor1, rel=1e-6)


def _ctx(fake, train):
    data = MNIST()
    return SimpleNamespace(
        dataset=data, fake=fake, train=train, device=CPU, evaluator=lambda: mnist_evaluator()
    )


def test_a_reused_fid_object_equals_fresh_ones(digits, tmp_path, monkeypatch):
    train, test = digits
    fake = torch.cat([test.x, test.x.flip(-1)])[:1200]  # 1,200 "generated" digits
    monkeypatch.setattr("harness.builtins.metrics.cache_dir", lambda: tmp_path / "reused")
    reused = Fidelity(prc=False)
    first = reused.evaluate(_ctx(fake[:500], train.x))
    second = reused.evaluate(_ctx(fake, train.x))
    assert first["fid_mnist_samples"] == 500 and second["fid_mnist_samples"] == 1200
    for n, values in ((500, first), (1200, second)):
        monkeypatch.setattr(fidelity, "_FLOORS", {})
        monkeypatch.setattr(
            "harness.builtins.metrics.cache_dir", lambda n=n: tmp_path / f"fresh{n}"
        )
        fresh = Fidelity(prc=False).evaluate(_ctx(fake[:n], train.x))
        assert fresh.keys() == values.keys()
        for key, value in fresh.items():
            assert values[key] == pytest.approx(value, rel=1e-9), (n, key)
    assert first["fid_mnist_floor"] > second["fid_mnist_floor"]  # fewer samples: higher floor


def test_protocol_names_evaluator_samples_and_reference():
    mnist = evaluation_protocol(MNIST(), 2000)
    assert mnist == f"mnist-eval-v2:{WEIGHTS_SHA256[:12]}:n2000:ref-embedded-train"
    assert evaluation_protocol(MNIST("torchvision"), 2000).endswith("ref-torchvision-train")
    assert evaluation_protocol(StackedMNIST(n=10), 500).startswith("mnist-eval-v2:")
    assert evaluation_protocol(Ring8(), 2000) == "gauss-3sigma-v1:n2000"
    assert evaluation_protocol(MNIST(), 1000) != mnist
