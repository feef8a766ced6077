"""CLI start-up time: ``harness --help``, ``harness list`` and ``harness validate SUITE`` as a
user types them, each a fresh process, and which heavy libraries each one imported.

    uv run python benchmarks/cli_startup.py [--runs 7] [--suite suites/mnist_modes.yaml]

Prints a markdown table: median, min and max wall seconds over ``--runs`` processes, the median
CPU seconds (user + system: less sensitive to other load than wall time), the goal
(--help 0.5 s; list and validate 2 s on 2 cores), and the heavy modules (torch, torchvision,
mlflow, ot, sklearn, pandas) found in ``sys.modules`` when the command finished. The runs of
the three commands are interleaved, so background load hits all of them alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "mlflow", "ot", "sklearn", "pandas")
# runs the CLI like the console script does, then reports which heavy modules it imported
PROBE = (
    "import sys\n"
    "from harness.cli import app\n"
    "try:\n    app(sys.argv[1:])\n"
    "except SystemExit:\n    pass\n"
    f"sys.stderr.write('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
)


def timed(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system) and heavy imports of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    heavy = done.stderr.rpartition("HEAVY:")[2].strip()
    return seconds, cpu, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--suite", default="suites/mnist_modes.yaml")
    args = parser.parse_args()
    commands = {
        "harness --help": (["--help"], 0.5),
        "harness list": (["list"], 2.0),
        f"harness validate {args.suite}": (["validate", args.suite], 2.0),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    heavy: dict[str, str] = {}
    timed(["--help"])  # warm the file cache and bytecode once
    for _ in range(args.runs):
        for name, (argv, _) in commands.items():
            seconds, used, imported = timed(argv)
            times[name].append(seconds)
            cpu[name].append(used)
            heavy[name] = imported
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{args.runs} runs each, {os.cpu_count()} cores (load average {load}), "
        f"Python {sys.version.split()[0]}\n"
    )
    print("| command | median s | min s | max s | median CPU s | goal s | heavy imports |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, (_, goal) in commands.items():
        t = times[name]
        print(
            f"| `{name}` | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} "
            f"| {statistics.median(cpu[name]):.2f} | {goal} | {heavy[name] or 'none'} |"
        )


if __name__ == "__main__":
    main()
