"""``--jobs N`` on a fixed slice of mnist_modes' ``full`` profile, projected to the whole
profile (8 strategies × 5 seeds × 20,000 steps, 10,000-sample evaluations every 2,000 steps).

    python benchmarks/gpu/jobs.py --device cuda [--jobs 1,4,8,16] [--steps 200] [--csv jobs.csv]

The slice: every strategy, seeds 0 and 1 (16 runs), ``--steps`` generator steps each, with the
profile's evaluation density (5 evaluation samples per step: an evaluation every steps/2 steps
of 2.5·steps samples), logged to a fresh MLflow SQLite store as ``harness run`` does. The
projection scales the slice's wall time linearly, by 40/16 runs and 20,000/steps steps; it
counts each run's start-up (process, CUDA context, first evaluation's real statistics) that many
times over, so it is an upper bound. ``--tiny``: the CPU dry run (widths 4, batch 16).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from profile_slice import load_slice  # noqa: E402

from harness.run.runner import RunSettings, run_suite  # noqa: E402
from harness.run.store import Store as Tracker  # noqa: E402
from harness.run.trainer import resolve_device  # noqa: E402

FULL_RUNS, FULL_STEPS = 8 * 5, 20_000
FIELDS = ["jobs", "runs", "steps", "wall_s", "projected_full_min", "finished", "max_peak_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", default="1,4,8,16")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="CPU dry run: small widths")
    args = parser.parse_args()
    device = resolve_device(args.device)
    seeds = [int(s) for s in args.seeds.split(",")]
    every = max(1, args.steps // 2)
    suite, registry = load_slice(
        "suites/mnist_modes.yaml", steps=args.steps, seeds=seeds, eval_every=every,
        eval_samples=max(10, round(5 * every)), tiny=args.tiny,
    )  # fmt: skip
    out = open(args.csv, "w", newline="") if args.csv else None  # noqa: SIM115
    writer = csv.DictWriter(out, FIELDS) if out else None
    if writer:
        writer.writeheader()
    rows = []
    for jobs in [int(j) for j in args.jobs.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            tracker = Tracker(f"sqlite:///{tmp}/mlflow.db")  # a fresh store: nothing skipped
            start = time.perf_counter()
            outcomes = run_suite(
                suite, registry, tracker, RunSettings(device=str(device), jobs=jobs)
            )
            wall = time.perf_counter() - start
        runs = len(suite.runs)
        scale = (FULL_RUNS / runs) * (FULL_STEPS / args.steps)
        peaks = [o.metrics.get("peak_memory_mb", 0.0) for o in outcomes]
        row = {
            "jobs": jobs,
            "runs": runs,
            "steps": args.steps,
            "wall_s": round(wall, 1),
            "projected_full_min": round(wall * scale / 60, 1),
            "finished": sum(o.status == "finished" for o in outcomes),
            "max_peak_mb": round(max(peaks, default=0.0), 1),
        }
        rows.append(row)
        print(f"  {row}", file=sys.stderr, flush=True)
        if writer:
            writer.writerow(row)
            out.flush()
    print(
        f"device: {device}, torch {torch.__version__}; slice: {len(suite.runs)} runs × "
        f"{args.steps} steps, evaluation every {every} steps of {5 * every} samples\n"
    )
    print("| --jobs | slice wall s | projected full profile, min | finished | max peak MiB/run |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['jobs']} | {r['wall_s']} | {r['projected_full_min']} | "
            f"{r['finished']}/{r['runs']} | {r['max_peak_mb']} |"
        )


if __name__ == "__main__":
    main()
