"""The second evaluator, trained on full MNIST (issue 23): made by an explicit command, used by
runs on full MNIST only, named in their protocol id, refused when tampered with."""

import struct

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness.builtins.datasets import MNIST, StackedMNIST, _embedded_mnist, stratified_split
from harness.cli import app
from harness.core.errors import HarnessError
from harness.evaluation.evaluator import (
    FULL_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    WEIGHTS_SHA256,
    evaluation_protocol,
    full_weights,
    mnist_evaluator,
    uses_full_evaluator,
)
from harness.evaluator_training import train_full


def _write_idx(raw, prefix: str, pixels: np.ndarray, labels: np.ndarray) -> None:
    n = len(labels)
    images = struct.pack(">IIII", 0x803, n, 28, 28) + pixels.astype(np.uint8).tobytes()
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(images)
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes()
    )


@pytest.fixture
def full_mnist(tmp_path, monkeypatch):
    """A --data-dir in torchvision's raw MNIST format (a few hundred real digits) and an empty
    cache of this test's own."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    pixels, labels = _embedded_mnist()
    split = stratified_split(labels, test_share=0.2)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train, test = split["train"][:600], split["test"][:200]
    _write_idx(raw, "train", pixels[train], labels[train])
    _write_idx(raw, "t10k", pixels[test], labels[test])
    return tmp_path / "data"


def test_full_mnist_runs_use_the_full_evaluator_once_it_is_trained(full_mnist):
    full, embedded = MNIST("torchvision"), MNIST("embedded")
    assert not uses_full_evaluator(full)
    assert evaluation_protocol(full, 100).startswith(f"{PROTOCOL_VERSION}:{WEIGHTS_SHA256[:12]}:")

    saved = train_full(full_mnist, epochs=1)

    assert full_weights().is_file()
    assert saved["trained_with"]["data"] == "mnist torchvision train (600 digits)"
    assert 0.5 < saved["test_accuracy"] <= 1.0  # one epoch on 600 digits, measured on 200
    assert uses_full_evaluator(full) and uses_full_evaluator(StackedMNIST(source="torchvision"))
    assert not uses_full_evaluator(embedded)
    sha, shipped = saved["sha256"][:12], f"{PROTOCOL_VERSION}:{WEIGHTS_SHA256[:12]}"
    assert (
        evaluation_protocol(full, 100)
        == f"{FULL_PROTOCOL_VERSION}:{sha}:n100:ref-torchvision-train"
    )
    assert evaluation_protocol(embedded, 100).startswith(shipped)
    evaluator = mnist_evaluator(full=True)
    assert evaluator.sha256 == saved["sha256"] != mnist_evaluator().sha256
    assert evaluator.trained_accuracy == saved["test_accuracy"]


def test_a_retrained_or_tampered_full_evaluator_is_reloaded_or_refused(full_mnist):
    first = train_full(full_mnist, epochs=1)["sha256"]
    assert mnist_evaluator(full=True).sha256 == first
    second = train_full(full_mnist, epochs=2)["sha256"]
    assert second != first and mnist_evaluator(full=True).sha256 == second

    saved = torch.load(full_weights(), weights_only=True)
    saved["state_dict"]["head.bias"] += 1.0
    torch.save(saved, full_weights())
    with pytest.raises(HarnessError, match="corrupt or was replaced; train it again"):
        mnist_evaluator(full=True)
    full_weights().write_bytes(b"not a zip")
    with pytest.raises(HarnessError, match="unreadable"):
        mnist_evaluator(full=True)


def test_train_evaluator_without_the_data_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["data", "train-evaluator", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(error) == 1 and "harness data fetch mnist" in error[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "cache").exists()


class _Planted:
    def __reduce__(self):
        import os

        return (os.system, ("touch planted-ran",))


def test_a_planted_pickle_in_the_cache_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    full_weights().parent.mkdir(parents=True)
    torch.save({"state_dict": _Planted()}, full_weights())
    assert uses_full_evaluator(MNIST("torchvision"))
    with pytest.raises(HarnessError, match="unreadable"):
        evaluation_protocol(MNIST("torchvision"), 100)
    assert not (tmp_path / "planted-ran").exists()


@pytest.mark.parametrize("damage", ["random bytes", "wrong image size"])
def test_damaged_mnist_files_are_one_line_for_the_evaluator_and_for_runs(full_mnist, damage):
    raw = full_mnist / "MNIST" / "raw"
    if damage == "random bytes":
        (raw / "train-images-idx3-ubyte").write_bytes(np.random.default_rng(0).bytes(100))
    else:
        pixels = np.zeros((600, 14, 14), np.uint8)
        header = struct.pack(">IIII", 0x803, 600, 14, 14)
        (raw / "train-images-idx3-ubyte").write_bytes(header + pixels.tobytes())
    with pytest.raises(HarnessError, match="not readable as MNIST|not 28×28 digits"):
        MNIST("torchvision").load("train", full_mnist)
    result = CliRunner().invoke(app, ["data", "train-evaluator", "--data-dir", str(full_mnist)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not full_weights().exists()
