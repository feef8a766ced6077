"""Wall time of whole suites trained run by run (``--no-stack``), as ``train.stack: auto``
leaves them, and (``--forced``) stacked wherever the parts allow (``--stack``), issue 25: each
suite in each mode, one after the other on the same machine, into fresh stores; auto starts
from an empty cache, so its trials are in its time.

    python benchmarks/stacked_suites.py [--suites toy_sweep,toy_modes,mnist_modes]
        [--steps toy_modes=500,mnist_modes=100] [--forced] [--repeat N] [--jobs N] [--csv FILE]

``--steps SUITE=N`` shortens a suite to N training steps (evaluated at N/2 and N) so that a
long one fits a session; the table says which budget each row ran. ``--repeat N`` times every
mode N times, each round into fresh stores and caches, the order of the modes reversed every other
round (so that a machine growing slower or faster during the run favours neither); the row gives
the medians and each round's speed-up. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import yaml

ROOT = Path(__file__).resolve().parents[1]


def shortened(suite: str, steps: int | None, folder: Path) -> Path:
    path = ROOT / "suites" / f"{suite}.yaml"
    if steps is None:
        return path
    config = yaml.safe_load(path.read_text())
    config["train"]["steps"] = steps
    config["eval"]["every"] = max(1, steps // 2)
    config["train"]["log_every"] = min(config["train"].get("log_every", 50), steps)
    out = folder / f"{suite}-{steps}.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def timed_run(suite: Path, mode: str, folder: Path, jobs: int | None) -> tuple[float, str]:
    """Seconds for ``harness run`` of ``suite`` in ``mode`` (no-stack, auto or stack), and its
    output."""
    env = dict(os.environ, HARNESS_CACHE_DIR=str(folder / f"cache-{mode}"))
    env.pop("HARNESS_JOBS", None)
    cmd = [str(Path(sys.executable).with_name("harness")), "run", str(suite)]
    cmd += ["--tracking-uri", f"sqlite:///{folder / mode}-{suite.stem}.db"]
    cmd += {"no-stack": ["--no-stack"], "stack": ["--stack"]}.get(mode, [])
    cmd += ["--jobs", str(jobs)] if jobs else []
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="toy_sweep,toy_modes,mnist_modes")
    parser.add_argument("--steps", default="", help="SUITE=N,...: shortened budgets")
    parser.add_argument("--forced", action="store_true", help="also time --stack")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every mode")
    parser.add_argument("--jobs", type=int, help="harness run --jobs (default: its own)")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    budgets = {k: int(v) for k, v in (p.split("=") for p in args.steps.split(",") if p)}
    modes = ["no-stack", "auto"] + (["stack"] if args.forced else [])
    fields = ["suite", "runs", "steps", "per_run_s", "auto_s", "speedup", "stacked_runs"]
    fields += ["stack_s", "stack_speedup"] if args.forced else []
    fields += ["rounds"] if args.repeat > 1 else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.suites.split(","):
            suite = shortened(name, budgets.get(name), Path(tmp))
            steps = yaml.safe_load(suite.read_text())["train"]["steps"]
            rounds = []
            for r in range(args.repeat):  # every other round in reverse order
                order = modes[::-1] if r % 2 else modes
                rounds.append(timed_round(suite, order, Path(tmp) / f"{name}-{r}", args.jobs))
            rows.append(row(name, steps, rounds, args.forced))
            print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), file=sys.stderr, flush=True)
    if args.csv:
        with args.csv.open("w", newline="") as f:
            csv.DictWriter(f, fields).writeheader()
            csv.DictWriter(f, fields).writerows(rows)
    print("wall seconds of `harness run`: run by run (--no-stack), train.stack: auto, --stack")
    print()
    print("| " + " | ".join(fields) + " |")
    print("|" + "---|" * len(fields))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in fields) + " |")


def timed_round(suite: Path, modes: list[str], folder: Path, jobs: int | None) -> dict:
    """Each mode's (seconds, output), one after the other in the order given, into fresh
    stores and caches under ``folder``."""
    folder.mkdir()
    return {mode: timed_run(suite, mode, folder, jobs) for mode in modes}


def row(name: str, steps: int, rounds: list[dict], forced: bool) -> dict:
    """The suite's row: median seconds of each mode, median speed-ups over the rounds."""
    seconds = lambda mode: [r[mode][0] for r in rounds]  # noqa: E731
    ratios = lambda mode: [r["no-stack"][0] / r[mode][0] for r in rounds]  # noqa: E731
    output = rounds[-1]["auto"][1]
    runs = re.search(r"(\d+) runs on", output)
    out = {
        "suite": name,
        "runs": runs.group(1) if runs else "?",
        "steps": steps,
        "per_run_s": f"{median(seconds('no-stack')):.1f}",
        "auto_s": f"{median(seconds('auto')):.1f}",
        "speedup": f"{median(ratios('auto')):.2f}",
        "stacked_runs": len(re.findall(r"stacked\)", output)),
    }  # fmt: skip
    if forced:
        out["stack_s"] = f"{median(seconds('stack')):.1f}"
        out["stack_speedup"] = f"{median(ratios('stack')):.2f}"
    if len(rounds) > 1:
        out["rounds"] = " / ".join(f"{r:.2f}" for r in ratios("auto"))
    return out


if __name__ == "__main__":
    main()
