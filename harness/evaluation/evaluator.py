"""The MNIST evaluator: a small CNN trained once, deterministically, by
``python -m harness.evaluator_training``, whose weights ship inside the package
(``harness/evaluation/weights/mnist_evaluator.pt``) and are checked against
:data:`WEIGHTS_SHA256` at load. It classifies generated digits (mode coverage) and its
penultimate layer is the feature space of ``fid_mnist``; every machine, thread count and install
sees the same network.

Get it with :func:`mnist_evaluator`; :func:`evaluation_protocol` names what a run's
evaluation numbers mean (logged as the ``eval_protocol`` param, compared by tables).
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from harness.core.errors import HarnessError
from harness.core.parts import ClassModes, GaussianModes, Samples

WEIGHTS = Path(__file__).with_name("weights") / "mnist_evaluator.pt"
WEIGHTS_SHA256 = "995d7f976c8e7e59b10eb077644249d4138e8356131d6b2dbf47535c16bb702a"
PROTOCOL_VERSION = "mnist-eval-v2"  # bump with the evaluator's weights or definition
TOY_PROTOCOL_VERSION = "gauss-3sigma-v1"  # PacGAN coverage: within 3σ of a centre


def cache_dir() -> Path:
    """Where cached real-data statistics live (``HARNESS_CACHE_DIR``); never weights."""
    return Path(os.environ.get("HARNESS_CACHE_DIR", Path.home() / ".cache" / "harness"))


class EvaluatorNet(nn.Module):
    """Two conv blocks and a 128-unit feature layer; input 1×28×28 in [−1, 1]."""

    feature_dim = 128

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, self.feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@dataclass(frozen=True)
class Evaluator:
    """The frozen network, its weights' sha256, and its accuracy on the embedded MNIST test
    split measured when it was trained."""

    net: EvaluatorNet
    sha256: str
    trained_accuracy: float

    @property
    def fingerprint(self) -> str:
        """The weights' hash prefix: names the feature extractor and its caches."""
        return self.sha256[:12]

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """Class labels; multi-channel inputs are classified channel by channel (N, C)."""
        channels = x.shape[1]
        device = next(self.net.parameters()).device
        flat = x.reshape(-1, 1, *x.shape[2:])
        labels = torch.cat([self.net(b.to(device)).argmax(1).cpu() for b in flat.split(batch_size)])
        return labels.reshape(-1, channels) if channels > 1 else labels

    def accuracy(self, data: Samples) -> float:
        """Share of ``data`` (single-channel digits) classified as labelled."""
        return (self.predict(data.x) == data.y.cpu()).float().mean().item()


def state_sha256(state: dict[str, Tensor]) -> str:
    """A canonical hash of a state dict: names, dtypes, shapes and bytes in order (the bytes
    of ``torch.save``'s zip file are not promised to be stable)."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def read_weights(path: Path = WEIGHTS, sha256: str | None = WEIGHTS_SHA256) -> dict:
    """The saved file's content, its state dict's hash checked (``sha256=None``: unchecked)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HarnessError(f"MNIST evaluator weights missing: {path} (a broken install)") from None
    actual = state_sha256(saved["state_dict"])
    if sha256 is not None and actual != sha256:
        raise HarnessError(
            f"MNIST evaluator weights {path} have sha256 {actual[:12]}…, expected "
            f"{sha256[:12]}…: the file is corrupt or was replaced; reinstall the harness"
        )
    return saved | {"sha256": actual}


@lru_cache(maxsize=1)
def _frozen_cpu() -> Evaluator:
    saved = read_weights()
    net = EvaluatorNet(saved["n_classes"])
    net.load_state_dict(saved["state_dict"])
    net.requires_grad_(False)
    return Evaluator(net.eval(), saved["sha256"], float(saved["test_accuracy"]))


@lru_cache(maxsize=4)
def _frozen_on(device: str) -> Evaluator:
    cpu = _frozen_cpu()
    return Evaluator(copy.deepcopy(cpu.net).to(device), cpu.sha256, cpu.trained_accuracy)


def mnist_evaluator(device: str | torch.device = "cpu") -> Evaluator:
    """The frozen MNIST evaluator on ``device``, loaded once per process and device; it
    serves every MNIST source (embedded, torchvision) and Stacked MNIST's channels."""
    device = torch.device(device)
    return _frozen_cpu() if device.type == "cpu" else _frozen_on(str(device))


def evaluation_protocol(dataset, samples: int, reference: str = "train") -> str:
    """What a run's evaluation numbers mean, as one id: for class-mode data (MNIST-like) the
    evaluator version and weights hash, the evaluation sample count and the reference split;
    for Gaussian toys the coverage definition and the sample count; else the sample count."""
    modes = getattr(dataset, "modes", None)
    if isinstance(modes, ClassModes):
        source = getattr(dataset, "source", None) or getattr(
            getattr(dataset, "digits", None), "source", "data"
        )
        return f"{PROTOCOL_VERSION}:{WEIGHTS_SHA256[:12]}:n{samples}:ref-{source}-{reference}"
    if isinstance(modes, GaussianModes):
        return f"{TOY_PROTOCOL_VERSION}:n{samples}"
    return f"samples-v1:n{samples}"
