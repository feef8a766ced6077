"""Start N `harness run` invocations of one suite on one SQLite store at once; check the store.

    uv run python benchmarks/concurrency.py suites/toy_modes.yaml --profile smoke --procs 2 4

Each count is tried twice: on a store none of them finds (they race to create it) and on an
existing, empty one. Every (strategy, seed) must end with exactly one finished run, no metric
step logged twice, no run left RUNNING, and every invocation must exit 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from kill_trials import check_store, harness_cmd  # noqa: E402


def race(cmd: list[str], procs: int) -> tuple[list[int], int]:
    """Start ``procs`` copies of ``cmd`` at once; their exit codes and how many runs they
    reported held by another invocation."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    running = [
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(procs)
    ]
    codes, held = [], 0
    for proc in running:
        _, stderr = proc.communicate()
        codes.append(proc.returncode)
        held += stderr.count(", skipped")
        if proc.returncode:
            print(stderr[-2000:], file=sys.stderr)
    return codes, held


def tally(uri: str, experiment: str) -> dict[str, int]:
    """Duplicate runs (same run key), doubled metric steps, and runs finished exactly once."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=50_000)
    kids = [r for r in runs if r.data.tags.get("harness.kind") == "run"]
    per_key = Counter(r.data.tags["run_key"] for r in kids)
    finished = Counter(r.data.tags["run_key"] for r in kids if r.data.tags["status"] == "finished")
    doubled = 0
    for run in kids:
        for key in run.data.metrics:
            steps = Counter(m.step for m in client.get_metric_history(run.info.run_id, key))
            doubled += sum(n - 1 for n in steps.values())
    return {
        "duplicate runs": sum(n - 1 for n in per_key.values()),
        "doubled steps": doubled,
        "finished once": sum(1 for n in finished.values() if n == 1),
        "left RUNNING": sum(1 for r in runs if r.info.status == "RUNNING"),
    }


def trial(suite: str, profile: str | None, procs: int, existing: bool, every: int) -> dict:
    from harness.run.loading import load_suite
    from harness.run.store import create_sqlite_store
    from harness.run.suite_file import read_yaml

    experiment = read_yaml(Path(suite))[1]["name"]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "mlflow.db"
        if existing:
            create_sqlite_store(db)
        uri = f"sqlite:///{db}"
        start = time.perf_counter()
        codes, held = race(harness_cmd(suite, uri, profile, every), procs)
        wall = time.perf_counter() - start
        problems = check_store(uri, experiment, suite, profile)
        counts = tally(uri, experiment)
    loaded, _ = load_suite(suite, profile=profile)
    return {
        "procs": procs,
        "store": "existing" if existing else "new",
        "runs": len(loaded.runs),
        **counts,
        "held lines": held,
        "exit codes": ",".join(map(str, codes)),
        "problems": len(problems),
        "wall s": f"{wall:.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--procs", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--checkpoint-every", type=int, default=5)
    args = parser.parse_args()
    rows = [
        trial(args.suite, args.profile, n, existing, args.checkpoint_every)
        for n in args.procs
        for existing in (False, True)
    ]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    bad = any(
        r["duplicate runs"] or r["doubled steps"] or r["problems"] or r["finished once"] < r["runs"]
        for r in rows
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
