"""Kill a suite at random moments, re-run it, repeat; then check the tracking store.

    uv run python benchmarks/kill_trials.py suites/toy_modes.yaml --profile smoke --kills 10

Afterwards the store must hold exactly one completed run per (strategy, seed), each with a
complete metric history (every logging step once), and no run left RUNNING.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def harness_cmd(suite: str, uri: str, profile: str | None, every: int) -> list[str]:
    cmd = [sys.executable, "-m", "harness.cli", "run", suite, "--tracking-uri", uri]
    cmd += ["--checkpoint-every", str(every)]
    return cmd + (["--profile", profile] if profile else [])


def kill_and_resume(cmd: list[str], kills: int, delay: tuple[float, float], seed: int = 0) -> int:
    """Start ``cmd``, SIGKILL it after a random delay, ``kills`` times; then run it to the end.
    Returns how many attempts were actually killed (a run may finish before its kill)."""
    rng = random.Random(seed)
    killed = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(kills):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            proc.wait(timeout=rng.uniform(*delay))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
    final = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if final.returncode != 0:
        raise RuntimeError(f"final run failed ({final.returncode}): {final.stderr[-2000:]}")
    return killed


def check_store(uri: str, experiment: str, suite: str, profile: str | None) -> list[str]:
    """Problems found in the store (empty when it is consistent)."""
    from mlflow.tracking import MlflowClient

    from harness.suite import load_suite

    loaded, _ = load_suite(suite, profile=profile)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=50_000)
    kids = [r for r in runs if r.data.tags.get("harness.kind") == "run"]
    problems = [f"{r.info.run_id} left RUNNING" for r in runs if r.info.status == "RUNNING"]
    for spec in loaded.runs:
        mine = [r for r in kids if r.data.tags["run_key"] == spec.run_key]
        done = [r for r in mine if r.data.tags["status"] == "finished"]
        if len(mine) != 1 or len(done) != 1:
            problems.append(f"{spec.strategy}/{spec.seed}: {len(mine)} runs, {len(done)} finished")
            continue
        history = client.get_metric_history(done[0].info.run_id, "loss_critic")
        steps = sorted(m.step for m in history)
        tc = spec.train
        expected = sorted(
            {s for s in range(1, tc.steps + 1) if s % tc.log_every == 0 or s % spec.eval.every == 0}
            | {tc.steps}
        )
        if steps != expected:
            problems.append(f"{spec.strategy}/{spec.seed}: loss_critic steps {steps} != {expected}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--min-delay", type=float, default=5.0)
    parser.add_argument("--max-delay", type=float, default=20.0)
    parser.add_argument("--checkpoint-every", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from harness.suite import read_yaml

    experiment = read_yaml(Path(args.suite))[1]["name"]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        cmd = harness_cmd(args.suite, uri, args.profile, args.checkpoint_every)
        start = time.perf_counter()
        killed = kill_and_resume(cmd, args.kills, (args.min_delay, args.max_delay), args.seed)
        problems = check_store(uri, experiment, args.suite, args.profile)
    print("| suite | profile | kills attempted | killed | problems | wall s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.suite} | {args.profile} | {args.kills} | {killed} | {len(problems)} "
        f"| {time.perf_counter() - start:.0f} |"
    )
    for problem in problems:
        print("-", problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
