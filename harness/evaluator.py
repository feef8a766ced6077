"""The MNIST evaluator: a small CNN the harness trains on a dataset's training split, cached
on disk by a fingerprint of the data. It classifies generated digits (mode coverage) and its
penultimate layer is the feature space of ``fid_mnist``."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.parts import Samples

VERSION = "1"  # bump when the network or its training changes: invalidates cached weights


def cache_dir() -> Path:
    """Where trained evaluators and real statistics live (``HARNESS_CACHE_DIR``)."""
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


@dataclass
class Evaluator:
    net: EvaluatorNet
    test_accuracy: float
    fingerprint: str

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """Class labels; multi-channel inputs are classified channel by channel (N, C)."""
        channels = x.shape[1]
        flat = x.reshape(-1, 1, *x.shape[2:])
        labels = torch.cat([self.net(b).argmax(1) for b in flat.split(batch_size)])
        return labels.reshape(-1, channels) if channels > 1 else labels


def fingerprint(*samples: Samples) -> str:
    digest = hashlib.sha256(VERSION.encode())
    for s in samples:
        digest.update(s.x.cpu().numpy().tobytes())
        digest.update(s.y.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _shift(x: Tensor, max_shift: int, gen: torch.Generator) -> Tensor:
    """Random per-sample translations of up to ``max_shift`` pixels (augmentation)."""
    n, _, h, w = x.shape
    offsets = (torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen) * 2).float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = offsets[:, 0] / w
    theta[:, 1, 2] = offsets[:, 1] / h
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


@torch.no_grad()
def accuracy(net: nn.Module, data: Samples) -> float:
    net.eval()
    predicted = torch.cat([net(b).argmax(1) for b in data.x.split(1000)])
    return (predicted == data.y).float().mean().item()


def train_evaluator(train: Samples, test: Samples, *, epochs: int = 8, seed: int = 0) -> Evaluator:
    """Train the CNN with shift augmentation; Adam, cosine schedule, batch 64."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = EvaluatorNet(int(train.y.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps = epochs * ((len(train.x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(train.x), generator=gen)
        for idx in order.split(64):
            x = _shift(train.x[idx], 2, gen)
            loss = F.cross_entropy(net(x), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return Evaluator(net, accuracy(net, test), fingerprint(train, test))


def load_evaluator(train: Samples, test: Samples, *, device: torch.device) -> Evaluator:
    """The cached evaluator for this data, training (and caching) it on first use."""
    key = fingerprint(train, test)
    path = cache_dir() / f"evaluator-{key}.pt"
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = EvaluatorNet(state["n_classes"])
        net.load_state_dict(state["weights"])
        evaluator = Evaluator(net.eval(), state["test_accuracy"], key)
    else:
        evaluator = train_evaluator(
            Samples(*(t.cpu() for t in train)), Samples(*(t.cpu() for t in test))
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        state = {
            "weights": evaluator.net.state_dict(),
            "n_classes": evaluator.net.head.out_features,
            "test_accuracy": evaluator.test_accuracy,
        }
        torch.save(state, tmp)
        tmp.replace(path)
    evaluator.net.to(device)
    return evaluator
