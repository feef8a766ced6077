"""Harness overhead: the same model, data and step count trained by a bare PyTorch loop written
here and by ``harness.run.trainer.train`` (null sink), for every registered constraint, on the toy
MLP (toy_modes) and DCGAN-28 MNIST (mnist_modes).

    uv run python benchmarks/overhead.py [--steps 200] [--repeats 5] [--archs toy,mnist]
        [--constraints none,weight_clip] [--precision fp32|bf16] [--device auto] [--threads N]
        [--full-width]

Prints a markdown table of milliseconds per generator step (median over repeats) and the ratio
harness / bare (median over repeats of back-to-back pairs). Bare and harness runs alternate (and
swap order every repeat), so background load hits both alike. The harness time is its
``train_seconds``: the training loop without evaluation (it runs once, at the end) and without
checkpoint writing. Every constraint gets the Wasserstein loss, n_critic 5 and the optimiser
its paper used, so rows differ only by the constraint. The bare loop writes the constraint's
math inline for the built-ins (for a constraint it does not know, it calls the plugin's hooks:
marked "hooks"); on CPU its final generator must equal the harness's bit for bit, fp32 or bf16
("same" column), which shows both did the same work.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

from harness.core.spec import SuiteConfig
from harness.registry import Registry
from harness.run.loading import resolve
from harness.run.trainer import MetricsSink, resolve_device, train

ARCHS = {
    "toy": {
        "dataset": "ring8",
        "architecture": {"name": "mlp", "width": 128, "depth": 3, "z_dim": 2},
        "batch_size": 256,
    },
    "mnist": {
        "dataset": {"name": "mnist", "source": "embedded"},
        "architecture": {"name": "dcgan28", "width": 16, "z_dim": 64},
        "batch_size": 64,
    },
}
INLINE = {"none", "weight_clip", "gradient_penalty", "spectral_norm"}


class LastCheckpoint(MetricsSink):
    """A null sink that keeps a reference to the final state (no copy, no I/O)."""

    state: dict | None = None

    def save_checkpoint(self, state: dict) -> None:
        self.state = state


def specs(arch: str, constraints: list[str], steps: int, precision: str, registry: Registry):
    setup = ARCHS[arch]
    raw = {
        "name": f"overhead-{arch}",
        "dataset": setup["dataset"],
        "architecture": setup["architecture"],
        "train": {
            "steps": steps,
            "batch_size": setup["batch_size"],
            "n_critic": 5,
            "log_every": 50,
            "precision": precision,
        },
        "strategies": {c: {"loss": "wasserstein", "constraint": c} for c in constraints},
        "eval": {"every": steps, "samples": 100},
    }
    runs = resolve(SuiteConfig.model_validate(raw), registry)
    return {run.strategy: run.model_copy(update={"metrics": []}) for run in runs}


def time_harness(spec, registry, device) -> tuple[float, nn.Module]:
    sink = LastCheckpoint()
    result = train(spec, registry=registry, device=device, sink=sink, checkpoint_every=10**9)
    if result.status != "finished" or result.steps != spec.train.steps:
        raise SystemExit(f"{spec.suite} {spec.strategy}: harness run {result.status}")
    return result.metrics["train_seconds"], sink.state["generator"]


def time_bare(spec, registry, device) -> tuple[float, dict]:
    """The plain PyTorch loop: the same set-up order (so the same RNG stream), no hooks."""
    random.seed(spec.seed)
    np.random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    dataset = registry.create("dataset", spec.dataset.name, spec.dataset.params)
    arch = registry.create("architecture", spec.architecture.name, spec.architecture.params)
    data = dataset.load("train").x.to(device)
    dataset.load("test")
    z_dim, (steps, batch, n_critic) = spec.architecture.z_dim, _train(spec)
    G, C = arch.build(z_dim, tuple(data.shape[1:]), "score")
    G, C = G.to(device), C.to(device)
    name, params = spec.constraint.name, spec.constraint.params
    inline = name in INLINE
    constraint = None if inline else registry.create("constraint", name, params)
    if name == "spectral_norm":
        for m in list(C.modules()):
            if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                nn.utils.parametrizations.spectral_norm(m)
    elif constraint is not None:
        C = constraint.wrap_critic(C)
    opt = spec.optimizer
    if opt.name == "adam":
        opt_g = torch.optim.Adam(G.parameters(), lr=opt.lr, betas=opt.betas)
        opt_c = torch.optim.Adam(C.parameters(), lr=opt.lr, betas=opt.betas)
    else:
        opt_g = torch.optim.RMSprop(G.parameters(), lr=opt.lr)
        opt_c = torch.optim.RMSprop(C.parameters(), lr=opt.lr)
    amp = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if spec.train.precision == "bf16"
        else contextlib.nullcontext()
    )
    n = len(data)

    start = time.perf_counter()
    for _ in range(steps):
        for _ in range(n_critic):
            real = data[torch.randint(0, n, (batch,), device=device)]
            with amp:
                with torch.no_grad():
                    fake = G(torch.randn(batch, z_dim, device=device))
                real_out, fake_out = C(real).float(), C(fake).float()
                loss_c = fake_out.mean() - real_out.mean()
                if name == "gradient_penalty":
                    eps = torch.rand((batch,) + (1,) * (real.dim() - 1), device=device)
                    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
                    (g,) = torch.autograd.grad(C(x_hat).sum(), x_hat, create_graph=True)
                    loss_c = loss_c + 10.0 * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
                elif constraint is not None:
                    penalty = constraint.penalty(C, real, fake)
                    if penalty is not None:
                        loss_c = loss_c + penalty
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
            if name == "weight_clip":
                with torch.no_grad():
                    for p in C.parameters():
                        p.clamp_(-0.01, 0.01)
            elif constraint is not None:
                constraint.after_critic_step(C)
        C.requires_grad_(False)
        with amp:
            loss_g = -C(G(torch.randn(batch, z_dim, device=device))).float().mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        C.requires_grad_(True)
    loss_g.item()  # wait for the device
    return time.perf_counter() - start, G.state_dict()


def _train(spec):
    return spec.train.steps, spec.train.batch_size, spec.train.n_critic


def paired_ratio(cell: dict[str, list[float]]) -> float:
    """Median over repeats of harness / bare, each pair measured back to back (slow drifts in
    the machine's speed cancel within a pair)."""
    return statistics.median(h / b for h, b in zip(cell["harness"], cell["bare"], strict=True))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="generator steps per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--archs", default="toy,mnist")
    parser.add_argument("--constraints", default=None, help="default: every registered one")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--full-width", action="store_true", help="the full profiles' MLP 512×3, DCGAN-28 64"
    )
    args = parser.parse_args()
    if args.full_width:
        ARCHS["toy"]["architecture"].update(width=512)
        ARCHS["mnist"]["architecture"].update(width=64, z_dim=128)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    registry = Registry()
    names = args.constraints.split(",") if args.constraints else list(registry.parts["constraint"])
    archs = args.archs.split(",")
    grid = {a: specs(a, names, args.steps, args.precision, registry) for a in archs}
    warm = {a: specs(a, names[:1], 3, args.precision, registry) for a in archs}
    for arch in archs:  # one-time costs (allocator, kernels, data caches) out of the way
        time_bare(warm[arch][names[0]], registry, device)
        time_harness(warm[arch][names[0]], registry, device)

    print(
        f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"precision {args.precision}, {args.steps} generator steps × n_critic 5, "
        f"median of {args.repeats}; load average before: {load()}"
    )
    times: dict[tuple[str, str], dict[str, list[float]]] = {}
    equal: dict[tuple[str, str], bool] = {}
    for r in range(args.repeats):
        for arch in archs:
            for name in names:
                spec = grid[arch][name]
                cell = times.setdefault((arch, name), {"bare": [], "harness": []})
                order = ("bare", "harness") if r % 2 == 0 else ("harness", "bare")
                finals = {}
                for who in order:
                    timer = time_bare if who == "bare" else time_harness
                    seconds, finals[who] = timer(spec, registry, device)
                    cell[who].append(1000 * seconds / args.steps)
                    print(
                        f"  repeat {r + 1} {arch} {name} {who}: {cell[who][-1]:.2f} ms/step",
                        file=sys.stderr,
                        flush=True,
                    )
                if device.type == "cpu":
                    equal[arch, name] = equal.get((arch, name), True) and same(
                        finals["bare"], finals["harness"]
                    )
    print(f"load average after: {load()}\n")
    print("| arch | constraint | bare ms/step | harness ms/step | harness/bare | × none | same |")
    print("|---|---|---:|---:|---:|---:|:-:|")
    for arch in archs:
        base = statistics.median(times[arch, "none"]["harness"]) if "none" in names else None
        for name in names:
            bare = statistics.median(times[arch, name]["bare"])
            ours = statistics.median(times[arch, name]["harness"])
            ratio = paired_ratio(times[arch, name])
            over = f"{ours / base:.2f}" if base else "–"
            tag = name if name in INLINE else f"{name} (hooks)"
            check = {True: "yes", False: "**no**"}.get(equal.get((arch, name)), "–")
            print(f"| {arch} | {tag} | {bare:.2f} | {ours:.2f} | {ratio:.3f} | {over} | {check} |")
    ratios = [paired_ratio(cell) for cell in times.values()]
    print(
        f"\ngeometric mean of harness/bare over the rows: {statistics.geometric_mean(ratios):.3f}"
    )
    spread = [
        (max(v) - min(v)) / statistics.median(v) for cell in times.values() for v in cell.values()
    ]
    print(f"max spread across repeats (max − min) / median: {max(spread):.1%}")


if __name__ == "__main__":
    main()
