"""Seconds per generator step of every strategy of the ``full`` profiles (toy MLP 512×3 and
DCGAN-28 width 64), through the harness trainer in fp32, bf16 and fp32 with ``--compile``, and
each run's peak device memory.

    python benchmarks/gpu/step_time.py --device cuda [--steps 100] [--modes fp32,bf16,compile]
        [--suites toy_modes,mnist_modes] [--csv step_time.csv] [--tiny]

Each (suite, mode) is warmed up by a 3-step run first; the time is the trainer's
``train_seconds`` (the loop alone: no evaluation, no checkpoints, compilation before it).
``--tiny`` (the CPU dry run) uses widths 8/4 and batch 16. Rows go to the CSV as they are
measured (a run stopped by a timeout keeps what it had), the markdown table to stdout at the end.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from profile_slice import load_slice  # noqa: E402

from harness.run.trainer import resolve_device, train  # noqa: E402

FIELDS = [
    "suite",
    "arch",
    "strategy",
    "constraint",
    "mode",
    "ms_per_step",
    "peak_memory_mb",
    "note",
]


class Warnings(logging.Handler):
    """The trainer's warnings during one run (a failed torch.compile falls back to eager)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def specs(suite: str, steps: int, precision: str, tiny: bool):
    loaded, registry = load_slice(
        f"suites/{suite}.yaml", steps=steps, seeds=[0], eval_every=steps, eval_samples=100,
        precision=precision, tiny=tiny,
    )  # fmt: skip
    cost = lambda spec: [m for m in spec.metrics if m.name == "cost"]  # noqa: E731 (peak memory)
    return [s.model_copy(update={"metrics": cost(s)}) for s in loaded.runs], registry


def _cell(row: dict) -> str:
    if not row:
        return "–"
    return f"{row['ms_per_step']}" + (" (eager: compile failed)" if row["note"] else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--modes", default="fp32,bf16,compile")
    parser.add_argument("--suites", default="toy_modes,mnist_modes")
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="CPU dry run: small widths")
    args = parser.parse_args()
    device = resolve_device(args.device)
    out = open(args.csv, "w", newline="") if args.csv else None  # noqa: SIM115
    writer = csv.DictWriter(out, FIELDS) if out else None
    if writer:
        writer.writeheader()
    rows = []
    for mode in args.modes.split(","):
        precision = "bf16" if mode == "bf16" else "fp32"
        for suite in args.suites.split(","):
            runs, registry = specs(suite, args.steps, precision, args.tiny)
            warm, _ = specs(suite, 3, precision, args.tiny)
            train(warm[0], registry=registry, device=device, compile=mode == "compile")
            for spec in runs:
                warned = Warnings()
                logging.getLogger("harness").addHandler(warned)
                result = train(
                    spec, registry=registry, device=device, checkpoint_every=10**9,
                    compile=mode == "compile",
                )  # fmt: skip
                logging.getLogger("harness").removeHandler(warned)
                eager = any("torch.compile failed" in m for m in warned.messages)
                row = {
                    "suite": suite,
                    "arch": spec.architecture.name,
                    "strategy": spec.strategy,
                    "constraint": spec.constraint.name,
                    "mode": mode,
                    "ms_per_step": round(1000 * result.train_seconds / max(result.steps, 1), 3),
                    "peak_memory_mb": round(result.metrics.get("peak_memory_mb", float("nan")), 1),
                    "note": "compile failed: eager" if eager else "",
                }
                rows.append(row)
                print(f"  {row}", file=sys.stderr, flush=True)
                if writer:
                    writer.writerow(row)
                    out.flush()
    modes = args.modes.split(",")
    print(f"device: {device}, torch {torch.__version__}, {args.steps} generator steps per run\n")
    head = " | ".join(f"{m} ms/step" for m in modes)
    print(f"| arch | strategy | {head} | peak MiB ({modes[0]}) |")
    print("|---|---|" + "---:|" * (len(modes) + 1))
    cells = {(r["arch"], r["strategy"], r["mode"]): r for r in rows}
    for arch, strategy in dict.fromkeys((r["arch"], r["strategy"]) for r in rows):
        times = [_cell(cells.get((arch, strategy, m), {})) for m in modes]
        peak = cells.get((arch, strategy, modes[0]), {}).get("peak_memory_mb", "–")
        print(f"| {arch} | {strategy} | " + " | ".join(map(str, times)) + f" | {peak} |")


if __name__ == "__main__":
    main()
