"""How close a training step comes to the CPU's peak: for every built-in architecture ×
constraint, the FLOPs of one generator step (its n_critic critic steps included), counted with
the formulas of torch's FlopCounterMode (matrix products and convolutions, forward and
backward, the penalty's double backward too), the achieved GFLOP/s at one torch thread, and
the machine's own one-thread ceiling measured the same way (a large fp32 matrix product and a
convolution). FlopCounterMode itself cannot watch a step: its module tracker breaks
``autograd.grad(create_graph=True)``, so :class:`Flops` applies its formula registry in a plain
dispatch mode (tests/test_roofline.py checks both against a hand count).

    uv run python benchmarks/roofline.py [--steps 20] [--archs mlp,dcgan28,pacgan_toy]
        [--constraints none,gradient_penalty] [--threads 1] [--profile N]

Each architecture runs at its reference suite's default profile (toy_modes, mnist_modes,
pacgan_grid): batch size, critic steps, widths and loss as there, the constraint's paper
optimiser. The step is the trainer's own (`critic_step` × n_critic + `generator_step`), timed
after warm-up steps; the table gives milliseconds per generator step, GFLOP per step, GFLOP/s
and the share of the ceiling (the larger of the two measured). ``--profile N`` prints
torch.profiler's top operators for the N slowest rows (by share of the ceiling).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from harness.core.spec import SuiteConfig
from harness.registry import Registry
from harness.run.loading import resolve
from harness.run.trainer import critic_step, generator_step, load_parts, seed_everything

ARCHS = {  # each architecture at its reference suite's default profile
    "mlp": {  # toy_modes
        "dataset": "ring8",
        "architecture": {"name": "mlp", "width": 128, "depth": 3, "z_dim": 2},
        "train": {"steps": 1, "batch_size": 256, "n_critic": 5},
        "loss": "wasserstein",
    },
    "dcgan28": {  # mnist_modes
        "dataset": {"name": "mnist", "source": "embedded"},
        "architecture": {"name": "dcgan28", "width": 16, "z_dim": 64},
        "train": {"steps": 1, "batch_size": 64, "n_critic": 5},
        "loss": "wasserstein",
    },
    "pacgan_toy": {  # pacgan_grid (PacGAN's grid: batch 100, one critic step, BCE)
        "dataset": {"name": "grid25", "spacing": 2.0, "sigma": 0.05, "scale": 1.0},
        "architecture": {"name": "pacgan_toy", "z_dim": 2},
        "train": {"steps": 1, "batch_size": 100, "n_critic": 1},
        "loss": "bce",
    },
}
NO_AMP = contextlib.nullcontext()


class Flops(TorchDispatchMode):
    """Counts FLOPs with FlopCounterMode's formulas, without its module tracker."""

    def __init__(self):
        super().__init__()
        self.formulas, self.total = FlopCounterMode(display=False).flop_registry, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.formulas.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matrix products and convolutions ``fn`` runs."""
    with Flops() as counter:
        fn()
    return counter.total


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ceiling(repeats: int = 5) -> dict[str, float]:
    """The one-thread GFLOP/s of a 2048² fp32 matrix product and of a 64→64-channel 3×3
    convolution on 64 images of 28×28 (forward): what this CPU reaches on pure arithmetic."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(64, 64, 28, 28)
    out = {}
    for name, fn in (("matmul", lambda: a @ b), ("conv", lambda: conv(x))):
        with torch.no_grad():
            out[name] = count_flops(fn) / timed(fn, repeats) / 1e9
    return out


def parts_for(arch: str, constraint: str):
    """The trainer's parts for one architecture × constraint (seeded, on the CPU)."""
    base = ARCHS[arch]
    config = SuiteConfig.model_validate(
        {
            "name": "roofline",
            "dataset": base["dataset"],
            "architecture": base["architecture"],
            "train": base["train"],
            "strategies": {"s": {"loss": base["loss"], "constraint": constraint}},
            "metrics": [],
        }
    )
    registry = Registry()
    (spec,) = resolve(config, registry)
    seed_everything(0)
    return spec, load_parts(spec, registry, torch.device("cpu"), None)


def measure(arch: str, constraint: str, steps: int) -> dict:
    spec, parts = parts_for(arch, constraint)
    tc = spec.train
    gen, crit = parts.generator, parts.critic

    def step():
        for _ in range(tc.n_critic):
            critic_step(parts, gen, crit, NO_AMP, tc.batch_size)
        generator_step(parts, gen, crit, NO_AMP, tc.batch_size)

    flops = count_flops(step)
    seconds = timed(step, steps)
    return {"arch": arch, "constraint": constraint, "ms": seconds * 1e3, "gflop": flops / 1e9}


def profile(arch: str, constraint: str, steps: int) -> str:
    """torch.profiler's operators by self CPU time over ``steps`` generator steps."""
    spec, parts = parts_for(arch, constraint)
    tc = spec.train

    def step():
        for _ in range(tc.n_critic):
            critic_step(parts, parts.generator, parts.critic, NO_AMP, tc.batch_size)
        generator_step(parts, parts.generator, parts.critic, NO_AMP, tc.batch_size)

    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed generator steps per row")
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--constraints", default=None, help="default: every registered one")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", type=int, default=0, help="profile the N slowest rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    constraints = (
        args.constraints.split(",") if args.constraints else list(Registry().parts["constraint"])
    )
    peak = ceiling()
    best = max(peak.values())
    print(
        f"ceiling at {args.threads} thread(s): matmul {peak['matmul']:.1f} GFLOP/s, "
        f"conv {peak['conv']:.1f} GFLOP/s ({torch.__version__}, "
        f"{torch.backends.cpu.get_cpu_capability()})\n"
    )
    print("| architecture | constraint | ms / step | GFLOP / step | GFLOP/s | of ceiling |")
    print("|---|---|---|---|---|---|")
    rows = []
    for arch in args.archs.split(","):
        for constraint in constraints:
            row = measure(arch, constraint, args.steps)
            row["rate"] = row["gflop"] / row["ms"] * 1e3
            rows.append(row)
            print(
                f"| {arch} | {constraint} | {row['ms']:.1f} | {row['gflop']:.3f} | "
                f"{row['rate']:.1f} | {row['rate'] / best:.0%} |",
                flush=True,
            )
    for row in sorted(rows, key=lambda r: r["rate"])[: args.profile]:
        print(f"\n### {row['arch']} × {row['constraint']}\n")
        print(profile(row["arch"], row["constraint"], max(3, args.steps // 4)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
