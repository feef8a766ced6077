"""Does training M runs as one stacked model pay (issue 25)? Milliseconds per training step per
member, measured by ``train.stack: auto``'s own trial (:func:`harness.run.stacked_training.trial`):
the runs alone one after another (:func:`harness.run.trainer.one_step`, one run timed per
critic-step count) against the M runs as one stack (``stacked_step``), on a suite's default
networks, batch, strategy and update schedule.

    python benchmarks/stacked_step.py [--device cpu] [--members 1,4,16,48] [--steps 3]
        [--archs ring,sweep,dcgan28,pacgan_grid] [--threads 1] [--csv FILE]

ring: toy_modes' WGAN-GP (3×128 MLPs, batch 256, 5 critic steps); sweep: toy_sweep's (2×64,
batch 128); dcgan28: mnist_modes' (width 16, batch 64); pacgan_grid: PacGAN Table 1's GAN
(maxout critic, batch-norm generator, simultaneous updates, batch 100), whose row also projects
the full Table 1 protocol (2 variants × 10 seeds × 400,000 steps) from its M=10 stack.
Prints a markdown table; the speed-up is the per-run time over the stacked time at the same M.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.core.spec import RunSpec  # noqa: E402
from harness.run.loading import load_suite  # noqa: E402
from harness.run.stacked_training import trial  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # name -> (suite, strategy)
    "ring": ("suites/toy_modes.yaml", "wgan-gp"),
    "sweep": ("suites/toy_sweep.yaml", "wgan-gp"),
    "dcgan28": ("suites/mnist_modes.yaml", "wgan-gp"),
    "pacgan_grid": ("suites/pacgan_grid.yaml", "gan"),
}
TABLE1 = {"variants": 2, "seeds": 10, "steps": 400_000}  # PacGAN Table 1's full protocol


def specs(name: str, members: int) -> tuple[list[RunSpec], object]:
    """``members`` runs of the strategy: seeds 0, 1, ... (in a sweep: its settings in turn,
    each with the next seed, as its full profile's seeds would be)."""
    path, strategy = CONFIGS[name]
    suite, registry = load_suite(ROOT / path)
    runs = [s for s in suite.runs if s.strategy == strategy]
    return [runs[i % len(runs)].model_copy(update={"seed": i}) for i in range(members)], registry


def measure(name: str, members: int, steps: int, device: torch.device) -> tuple[float, float]:
    """(the runs alone, one after another; the stack of ``members``): seconds per training
    step, as ``train.stack: auto``'s trial measures them."""
    runs, registry = specs(name, members)
    timing = trial(runs, registry, device, None, steps)
    return timing["per_run_s"], timing["stacked_s"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--members", default="1,4,16,48")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (+1 warm-up)")
    parser.add_argument("--archs", default="ring,sweep,dcgan28,pacgan_grid")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fields = ["arch", "members", "per_run_ms", "stacked_ms", "speedup", "device"]
    rows, notes = [], []
    for name in args.archs.split(","):
        counts = sorted(
            set(map(int, args.members.split(","))) | ({10} if name == "pacgan_grid" else set())
        )
        for m in counts:
            per_run, stacked = measure(name, m, args.steps, device)
            rows.append({
                "arch": name,
                "members": m,
                "per_run_ms": f"{per_run * 1000 / m:.2f}",
                "stacked_ms": f"{stacked * 1000 / m:.2f}",
                "speedup": f"{per_run / stacked:.2f}",
                "device": args.device,
            })  # fmt: skip
            print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), file=sys.stderr, flush=True)
            if name == "pacgan_grid" and m == TABLE1["seeds"]:
                hours = lambda s: s * TABLE1["steps"] * TABLE1["variants"] / 3600  # noqa: E731
                notes.append(
                    f"PacGAN Table 1's full protocol ({TABLE1['variants']} variants × "
                    f"{TABLE1['seeds']} seeds × {TABLE1['steps']:,} steps, training only): "
                    f"{hours(per_run):.1f} h run by run, {hours(stacked):.1f} h as one "
                    f"stack of {m} per variant, on {args.device}"
                )
    if args.csv:
        with args.csv.open("w", newline="") as f:
            csv.DictWriter(f, fields).writeheader()
            csv.DictWriter(f, fields).writerows(rows)
    print(f"ms per training step per member, {args.steps} timed steps, harness code paths")
    print()
    print("| " + " | ".join(fields) + " |")
    print("|" + "---|" * len(fields))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in fields) + " |")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
