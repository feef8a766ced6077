"""Would training M members as one stacked model pay (issue 25)? Milliseconds per generator
step per member, WGAN-GP (5 critic steps with the gradient penalty, then a generator step, Adam),
for M members trained one after another in one process (the per-run path, without its process
start, data and evaluator loading) and as one stacked model (``torch.func``: the members'
parameters stacked along a first axis, ``vmap`` over ``functional_call``, which runs linear
layers as batched products and convolutions as grouped ones; mean losses summed over members,
so each member's gradient is its own; Adam is element-wise, so one optimiser over the stacked
tensors is each member's own).

    python benchmarks/stacked_step.py [--device cpu] [--members 1,4,16,48] [--steps 5]
        [--archs ring,sweep,dcgan28] [--threads 1] [--csv FILE]

Before timing, both paths train 3 steps from the same initial weights on the same batches and
the largest parameter difference between a stacked member and its own run is printed
(``max |Δθ|``): the stacked step is the same computation in another summation order.
Prints a markdown table; the speed-up is per-run time over stacked time at the same M.
"""

from __future__ import annotations

import argparse
import copy
import csv
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.builtins.architecture_nets import (  # noqa: E402
    dcgan28_critic,
    dcgan28_generator,
    mlp_critic,
    mlp_generator,
)

ARCHS = {  # name -> (z_dim, data shape, batch, networks): the suites' default profiles
    "ring": (
        2,
        (2,),
        256,
        lambda: (mlp_generator(2, [128] * 3, (2,)), mlp_critic([128] * 3, (2,))),
    ),
    "sweep": (2, (2,), 256, lambda: (mlp_generator(2, [64] * 2, (2,)), mlp_critic([64] * 2, (2,)))),
    "dcgan28": (
        64,
        (1, 28, 28),
        64,
        lambda: (dcgan28_generator(64, 16, 1), dcgan28_critic(16, (1, 28, 28))),
    ),
}
N_CRITIC, GP_WEIGHT, LR, BETAS = 5, 10.0, 1e-4, (0.5, 0.9)


def members(arch: str, m: int, device: str) -> list[tuple[nn.Module, nn.Module]]:
    build = ARCHS[arch][3]
    out = []
    for seed in range(m):
        torch.manual_seed(seed)
        g, d = build()
        out.append((g.to(device), d.to(device)))
    return out


def batches(arch: str, m: int, steps: int, device: str, seed: int = 0) -> list[dict]:
    """Per generator step: real data, noise and interpolation weights for every member."""
    z_dim, shape, batch, _ = ARCHS[arch]
    gen = torch.Generator().manual_seed(seed)
    draw = lambda *s: torch.randn(*s, generator=gen).to(device)  # noqa: E731
    eps_shape = (m, N_CRITIC, batch) + (1,) * len(shape)
    return [
        {
            "real": draw(m, N_CRITIC, batch, *shape).clamp(-1, 1),
            "z_d": draw(m, N_CRITIC, batch, z_dim),
            "eps": torch.rand(*eps_shape, generator=gen).to(device),
            "z_g": draw(m, batch, z_dim),
        }
        for _ in range(steps)
    ]


def gp(critic, x_hat: torch.Tensor, dims: int) -> torch.Tensor:
    """λ·(‖∇c(x̂)‖ − 1)², mean over the batch axis ``dims - 1`` (per member when stacked)."""
    x_hat.requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norm = grad.flatten(dims).norm(dim=dims)
    return GP_WEIGHT * ((norm - 1) ** 2).mean(-1).sum()


def step(generator, critic, opt_g, opt_d, b: dict, member_axis: int, idx=slice(None)) -> None:
    """One WGAN-GP generator step; ``member_axis`` 1 for stacked tensors (M, B, ...), 0 for a
    single run's slice ``idx`` of them."""
    dims = 1 + member_axis
    for k in range(N_CRITIC):
        real, z, eps = b["real"][idx, k], b["z_d"][idx, k], b["eps"][idx, k]
        with torch.no_grad():
            fake = generator(z)
        x_hat = eps * real + (1 - eps) * fake
        loss = (critic(fake).mean(-1) - critic(real).mean(-1)).sum() + gp(critic, x_hat, dims)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
    loss = -critic(generator(b["z_g"][idx])).mean(-1).sum()
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()


class PerRun:
    """M ordinary runs, stepped one after another."""

    def __init__(self, nets):
        self.nets = nets
        self.opts = [
            (
                torch.optim.Adam(g.parameters(), LR, BETAS),
                torch.optim.Adam(d.parameters(), LR, BETAS),
            )
            for g, d in nets
        ]

    def step(self, b: dict) -> None:
        for i, ((g, d), (og, od)) in enumerate(zip(self.nets, self.opts, strict=True)):
            step(g, d, og, od, b, 0, i)

    def params(self, i: int) -> list[torch.Tensor]:
        g, d = self.nets[i]
        return [p.detach() for p in (*g.parameters(), *d.parameters())]


class Stacked:
    """The same M runs as one model: stacked parameters, ``vmap`` over the members."""

    def __init__(self, nets):
        self.g_params, g_buffers = stack_module_state([g for g, _ in nets])
        self.d_params, d_buffers = stack_module_state([d for _, d in nets])
        g_base = copy.deepcopy(nets[0][0]).to("meta")
        d_base = copy.deepcopy(nets[0][1]).to("meta")
        g_call = lambda p, b, x: functional_call(g_base, (p, b), (x,))  # noqa: E731
        d_call = lambda p, b, x: functional_call(d_base, (p, b), (x,))  # noqa: E731
        self.generator = lambda x: vmap(g_call)(self.g_params, g_buffers, x)
        self.critic = lambda x: vmap(d_call)(self.d_params, d_buffers, x)
        self.opt_g = torch.optim.Adam(self.g_params.values(), LR, BETAS)
        self.opt_d = torch.optim.Adam(self.d_params.values(), LR, BETAS)

    def step(self, b: dict) -> None:
        step(self.generator, self.critic, self.opt_g, self.opt_d, b, 1)

    def params(self, i: int) -> list[torch.Tensor]:
        return [p[i].detach() for p in (*self.g_params.values(), *self.d_params.values())]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(trainer, data: list[dict], device: str) -> float:
    trainer.step(data[0])  # warm-up
    sync(device)
    start = time.perf_counter()
    for b in data[1:]:
        trainer.step(b)
    sync(device)
    return time.perf_counter() - start


def agreement(arch: str, device: str, m: int = 3, steps: int = 3) -> float:
    """Largest |θ_stacked − θ_run| over members and parameters after ``steps`` steps."""
    data = batches(arch, m, steps, device, seed=1)
    runs, stacked = PerRun(members(arch, m, device)), Stacked(members(arch, m, device))
    for b in data:
        runs.step(b)
        stacked.step(b)
    return max(
        (a - s).abs().max().item()
        for i in range(m)
        for a, s in zip(runs.params(i), stacked.params(i), strict=True)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--members", default="1,4,16,48")
    parser.add_argument("--steps", type=int, default=5, help="timed generator steps (+1 warm-up)")
    parser.add_argument("--archs", default="ring,sweep,dcgan28")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    fields = ["arch", "members", "per_run_ms", "stacked_ms", "speedup", "max_abs_diff", "device"]
    rows = []
    for arch in args.archs.split(","):
        diff = agreement(arch, args.device)
        for m in map(int, args.members.split(",")):
            data = batches(arch, m, args.steps + 1, args.device)
            per_run = timed(PerRun(members(arch, m, args.device)), data, args.device)
            stacked = timed(Stacked(members(arch, m, args.device)), data, args.device)
            per_member = 1000 / (m * args.steps)
            rows.append(
                {
                    "arch": arch,
                    "members": m,
                    "per_run_ms": f"{per_run * per_member:.2f}",
                    "stacked_ms": f"{stacked * per_member:.2f}",
                    "speedup": f"{per_run / stacked:.2f}",
                    "max_abs_diff": f"{diff:.1e}",
                    "device": args.device,
                }
            )
            print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), file=sys.stderr, flush=True)
    if args.csv:
        with args.csv.open("w", newline="") as f:
            csv.DictWriter(f, fields).writeheader()
            csv.DictWriter(f, fields).writerows(rows)
    print(
        f"ms per generator step per member (WGAN-GP, {N_CRITIC} critic steps), {args.steps} steps"
    )
    print()
    print("| " + " | ".join(fields) + " |")
    print("|" + "---|" * len(fields))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in fields) + " |")


if __name__ == "__main__":
    main()
