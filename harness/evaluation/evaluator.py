"""The MNIST evaluator: a small CNN trained once, deterministically, by
``python -m harness.evaluator_training``, whose weights ship inside the package
(``harness/evaluation/weights/mnist_evaluator.pt``) and are checked against
:data:`WEIGHTS_SHA256` at load. It classifies generated digits (mode coverage) and its
penultimate layer is the feature space of ``fid_mnist``; every machine, thread count and install
sees the same network.

A second evaluator, the same network trained on the 60,000 digits of full MNIST (as PacGAN's
was), is made on the user's machine by ``harness data train-evaluator --data-dir DIR`` and kept
in the cache (:func:`full_weights`); runs on full MNIST (``source: torchvision``) use it when it
is there, and their protocol id says which evaluator measured them.

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
FULL_PROTOCOL_VERSION = "mnist-full-eval-v1"  # the evaluator trained on full MNIST
TOY_PROTOCOL_VERSION = "gauss-3sigma-v1"  # PacGAN coverage: within 3σ of a centre


def cache_dir() -> Path:
    """Where cached real-data statistics and the full-MNIST evaluator live
    (``HARNESS_CACHE_DIR``); nothing downloaded."""
    return Path(os.environ.get("HARNESS_CACHE_DIR", Path.home() / ".cache" / "harness"))


def full_weights() -> Path:
    """The evaluator trained on full MNIST by ``harness data train-evaluator``."""
    return cache_dir() / "mnist_full_evaluator.pt"


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
    """The frozen network, its weights' sha256, and its accuracy on the test split of the
    digits it was trained on (embedded or full MNIST), measured when it was trained."""

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
    """The saved file's content, its state dict's hash checked against ``sha256`` (None: against
    the hash the file records, which the full-MNIST evaluator's file carries)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        why = "a broken install" if sha256 else "`harness data train-evaluator` makes it"
        raise HarnessError(f"MNIST evaluator weights missing: {path} ({why})") from None
    except Exception as exc:  # a pickle with code, random bytes, a truncated zip
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HarnessError(f"MNIST evaluator weights {path} unreadable: {why}") from None
    try:
        actual = state_sha256(saved["state_dict"])
        expected = sha256 or saved["sha256"]
    except (KeyError, TypeError, AttributeError):
        raise HarnessError(f"MNIST evaluator weights {path}: not an evaluator file") from None
    if actual != expected:
        raise HarnessError(
            f"MNIST evaluator weights {path} have sha256 {actual[:12]}…, expected "
            f"{expected[:12]}…: the file is corrupt or was replaced; "
            + ("reinstall the harness" if sha256 else "train it again")
        )
    return saved | {"sha256": actual}


@lru_cache(maxsize=4)
def _frozen_cpu(full: bool, _stamp=None) -> Evaluator:
    path, sha256 = (full_weights(), None) if full else (WEIGHTS, WEIGHTS_SHA256)
    saved = read_weights(path, sha256)
    net = EvaluatorNet(saved["n_classes"])
    try:
        net.load_state_dict(saved["state_dict"])
    except (RuntimeError, TypeError) as exc:
        raise HarnessError(f"MNIST evaluator weights {path}: {exc}".splitlines()[0]) from None
    net.requires_grad_(False)
    return Evaluator(net.eval(), saved["sha256"], float(saved["test_accuracy"]))


@lru_cache(maxsize=4)
def _frozen_on(device: str, full: bool, _stamp=None) -> Evaluator:
    cpu = _frozen_cpu(full, _stamp)
    return Evaluator(copy.deepcopy(cpu.net).to(device), cpu.sha256, cpu.trained_accuracy)


def _stamp(full: bool):
    """The full-MNIST file's identity (path, mtime, size), the caches' key: a retrained file,
    or another cache folder, is loaded afresh."""
    if not full:
        return None
    path = full_weights()
    stat = path.stat() if path.is_file() else None
    return (str(path), stat and stat.st_mtime_ns, stat and stat.st_size)


def mnist_evaluator(device: str | torch.device = "cpu", full: bool = False) -> Evaluator:
    """The frozen MNIST evaluator on ``device``, loaded once per process and device: the
    shipped one (embedded digits), or with ``full`` the one trained on full MNIST. It serves
    every MNIST source and Stacked MNIST's channels."""
    device, stamp = torch.device(device), _stamp(full)
    if device.type == "cpu":
        return _frozen_cpu(full, stamp)
    return _frozen_on(str(device), full, stamp)


def _source(dataset) -> str:
    return getattr(dataset, "source", None) or getattr(
        getattr(dataset, "digits", None), "source", "data"
    )


def uses_full_evaluator(dataset) -> bool:
    """Whether ``dataset`` is measured by the full-MNIST evaluator: full MNIST (``source:
    torchvision``, MNIST or Stacked MNIST) and the evaluator trained (:func:`full_weights`)."""
    return (
        isinstance(getattr(dataset, "modes", None), ClassModes)
        and _source(dataset) == "torchvision"
        and full_weights().is_file()
    )


def evaluation_protocol(dataset, samples: int, reference: str = "train") -> str:
    """What a run's evaluation numbers mean, as one id: for class-mode data (MNIST-like) the
    evaluator (version and weights hash), the evaluation sample count and the reference split;
    for Gaussian toys the coverage definition and the sample count; else the sample count."""
    modes = getattr(dataset, "modes", None)
    if isinstance(modes, ClassModes):
        source = _source(dataset)
        if uses_full_evaluator(dataset):
            sha = mnist_evaluator(full=True).fingerprint
            return f"{FULL_PROTOCOL_VERSION}:{sha}:n{samples}:ref-{source}-{reference}"
        return f"{PROTOCOL_VERSION}:{WEIGHTS_SHA256[:12]}:n{samples}:ref-{source}-{reference}"
    if isinstance(modes, GaussianModes):
        return f"{TOY_PROTOCOL_VERSION}:n{samples}"
    return f"samples-v1:n{samples}"
