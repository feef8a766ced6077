"""Kill a suite at random moments, re-run it, repeat; then check the tracking store.

    uv run python benchmarks/kill_trials.py suites/toy_modes.yaml --profile smoke --kills 10

An uninterrupted invocation is timed first (its length, and its start-up as a re-run that has
nothing left to do). Each trial then starts the suite on a fresh store and SIGKILLs it at a
moment drawn uniformly over the work still left, again and again, until the invocation
finishes on its own; only attempts still running at their kill count as kills. Afterwards the
store must hold exactly one completed run per (strategy, seed), each with every param and a
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


def env() -> dict[str, str]:
    """The environment of the runs: this process's now (a test may set HARNESS_JOBS)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_to_end(cmd: list[str]) -> float:
    """Run ``cmd`` uninterrupted; its wall-clock seconds."""
    start = time.perf_counter()
    final = subprocess.run(cmd, capture_output=True, text=True, env=env())
    if final.returncode != 0:
        raise RuntimeError(f"run failed ({final.returncode}): {final.stderr[-2000:]}")
    return time.perf_counter() - start


def measure(cmd: list[str]) -> tuple[float, float]:
    """(length, start-up) of ``cmd`` on its own store: an uninterrupted invocation, then a
    re-run that finds everything finished."""
    return run_to_end(cmd), run_to_end(cmd)


def kill_and_resume(
    cmd: list[str], kills: int, timing: tuple[float, float], seed: int = 0
) -> tuple[int, int]:
    """Start ``cmd`` and SIGKILL it at a moment drawn uniformly over the work left — the
    measured ``timing`` (length, start-up): the length less what killed attempts ran past
    start-up — until ``kills`` attempts were really killed or one finished on its own; then
    run it to the end. Returns (attempts, real kills)."""
    rng = random.Random(seed)
    length, startup = timing
    left, attempts, killed = length, 0, 0
    while killed < kills:
        attempts += 1
        delay = rng.uniform(0, left)
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env()
        )
        try:
            proc.wait(timeout=delay)
            break  # it finished first: nothing left to kill
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
            left = max(startup, left - max(0.0, delay - startup))
    run_to_end(cmd)
    return attempts, killed


def kill_when(cmd: list[str], ready, delay: float) -> tuple[bool, float]:
    """Start ``cmd``; once ``ready()`` is true (polled every 10 ms), wait ``delay`` seconds and
    SIGKILL it. Returns (whether it was still running when killed, seconds until ready)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    while not ready() and proc.poll() is None:
        time.sleep(0.01)
    took = time.perf_counter() - start
    try:
        proc.wait(timeout=delay)
        return False, took  # it finished first
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True, took


def training(db: Path):
    """Whether a process trains a run on the store ``db``: a run key is claimed."""
    return lambda: any((db.parent / "checkpoints").glob("*.claim"))


def check_store(
    uri: str, experiment: str, suite: str, profile: str | None, loaded=None
) -> list[str]:
    """Problems found in the store (empty when it is consistent); ``loaded``: the suite as
    loaded by the runs checked (its run keys hash plugin code, which may change meanwhile)."""
    from mlflow.tracking import MlflowClient

    from harness.run.loading import load_suite
    from harness.run.store import flatten

    if loaded is None:
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
        run = done[0]
        expected_params = set(flatten(spec.config)) | {"harness_version"}
        if missing := expected_params - set(run.data.params):
            problems.append(f"{spec.strategy}/{spec.seed}: {len(missing)} params missing")
        for key in run.data.metrics:
            logged = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            if len(logged) != len(set(logged)):
                problems.append(f"{spec.strategy}/{spec.seed}: {key} has doubled steps")
        history = client.get_metric_history(run.info.run_id, "loss_critic")
        steps = sorted(m.step for m in history)
        tc = spec.train
        expected = sorted(
            {s for s in range(1, tc.steps + 1) if s % tc.log_every == 0 or s % spec.eval.every == 0}
            | {tc.steps}
        )
        if steps != expected:
            problems.append(f"{spec.strategy}/{spec.seed}: loss_critic steps {steps} != {expected}")
    return problems


def leftovers(db: Path) -> list[str]:
    """What an SQLite store's folder still holds that no finished suite needs: lock files,
    temporary checkpoints, checkpoint folders, temporary stores."""
    found = [p.name for p in db.parent.glob(f".{db.name}.*")]
    checkpoints = db.parent / "checkpoints"
    if checkpoints.is_dir():
        found += [str(p.relative_to(db.parent)) for p in checkpoints.rglob("*")]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--kills", type=int, default=10, help="real kills in all")
    parser.add_argument("--per-trial", type=int, default=5, help="at most, per fresh store")
    parser.add_argument("--checkpoint-every", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from harness.run.suite_file import read_yaml

    experiment = read_yaml(Path(args.suite))[1]["name"]
    start = time.perf_counter()
    trials = attempts = killed = 0
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:

        def cmd(db: Path) -> list[str]:
            return harness_cmd(args.suite, f"sqlite:///{db}", args.profile, args.checkpoint_every)

        timing = measure(cmd(Path(tmp) / "timing" / "mlflow.db"))
        while killed < args.kills:
            trials += 1
            db = Path(tmp) / f"trial{trials}" / "mlflow.db"
            tried, hit = kill_and_resume(
                cmd(db), min(args.per_trial, args.kills - killed), timing, args.seed + trials
            )
            attempts, killed = attempts + tried, killed + hit
            found = check_store(f"sqlite:///{db}", experiment, args.suite, args.profile)
            problems += [f"trial {trials}: {p}" for p in found + leftovers(db)]
    print(f"uninterrupted: {timing[0]:.1f} s, of which start-up {timing[1]:.1f} s")
    print("| suite | profile | trials | attempts | real kills | problems | wall s |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.suite} | {args.profile} | {trials} | {attempts} | {killed} | {len(problems)} "
        f"| {time.perf_counter() - start:.0f} |"
    )
    for problem in problems:
        print("-", problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
