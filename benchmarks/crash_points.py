"""Crash a suite at every tracking call in turn, re-run it, and check the store each time.

    uv run python benchmarks/crash_points.py suites/toy_modes.yaml --profile smoke

A clean run first counts the suite's MlflowClient calls (N). Then for k = 1..N+1 a fresh copy
of one empty store gets a run that dies (``os._exit``) just before its k-th call — so after
k-1 calls, the last point being after every call — and a second, undisturbed run. The store
must then hold one finished run per (strategy, seed) with every param, every metric step
once, nothing RUNNING, and no leftover lock, checkpoint or temporary file. Runs are forked
from one process that imported everything once (about a second each instead of ten).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from kill_trials import check_store, leftovers  # noqa: E402

CRASHED = 70  # the exit status of an injected crash


STATE: dict = {"crash_at": None, "calls": [], "depth": 0}


def inject() -> None:
    """Count every outermost MlflowClient method call into ``STATE["calls"]``; exit the process
    just before call number ``STATE["crash_at"]``."""
    from mlflow.tracking import MlflowClient

    for name, static in inspect.getmembers_static(MlflowClient):
        if name.startswith("_") or not inspect.isfunction(static):
            continue

        def wrapper(self, *args, _call=static, _name=name, **kwargs):
            if STATE["depth"] == 0:
                STATE["calls"].append(_name)
                if len(STATE["calls"]) == STATE["crash_at"]:
                    os._exit(CRASHED)
            STATE["depth"] += 1
            try:
                return _call(self, *args, **kwargs)
            finally:
                STATE["depth"] -= 1

        setattr(MlflowClient, name, wrapper)


def forked(fn, *args) -> int:
    """Run ``fn(*args)`` in a forked child; its exit status (0 when it returns)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn(*args)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def run(suite, registry, uri: str, crash_at: int | None, every: int) -> list[str]:
    """Run the suite into ``uri``, crashing before call ``crash_at``; the calls made."""
    from harness.run.runner import RunSettings, run_suite
    from harness.run.store import Store as Tracker

    STATE.update(crash_at=crash_at, calls=[], depth=0)
    run_suite(suite, registry, Tracker(uri), RunSettings(device="cpu", checkpoint_every=every))
    return STATE["calls"]


def check(uri: str, suite, out: Path) -> None:
    db = Path(uri.removeprefix("sqlite:///"))
    problems = check_store(uri, suite.config.name, suite.path, suite.profile, suite)
    problems += [f"left behind: {p}" for p in leftovers(db)]
    out.write_text(json.dumps(problems))


def crash_points(suite_path: str, profile: str | None, every: int, work: Path) -> list[dict]:
    """One row per crash point: k, the call it preceded, exit status, problems after re-run.
    The undisturbed run counting the calls runs here, so every fork starts with everything
    imported (one torch thread: forking after a thread pool started is unsafe)."""
    import torch

    from harness.run.loading import load_suite
    from harness.run.store import create_sqlite_store

    torch.set_num_threads(1)
    suite, registry = load_suite(suite_path, profile=profile)
    template = work / "template" / "mlflow.db"
    create_sqlite_store(template)
    clean = work / "clean" / "mlflow.db"
    clean.parent.mkdir()
    shutil.copy(template, clean)
    inject()
    calls = run(suite, registry, f"sqlite:///{clean}", None, every)
    rows = []
    for k in range(1, len(calls) + 2):
        db = work / f"k{k}" / "mlflow.db"
        db.parent.mkdir()
        shutil.copy(template, db)
        uri = f"sqlite:///{db}"
        code = forked(run, suite, registry, uri, k, every)
        rerun = forked(run, suite, registry, uri, None, every)
        out = work / f"k{k}.json"
        forked(check, uri, suite, out)
        problems = json.loads(out.read_text()) if out.exists() else ["check failed"]
        if rerun:
            problems.append(f"re-run exited {rerun}")
        before = calls[k - 1] if k <= len(calls) else "(after the last call)"
        rows.append({"k": k, "call": before, "exit": code, "problems": problems})
        shutil.rmtree(db.parent)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--profile", default="smoke", help="'' for none")
    parser.add_argument("--checkpoint-every", type=int, default=10)
    args = parser.parse_args()
    args.profile = args.profile or None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = crash_points(args.suite, args.profile, args.checkpoint_every, Path(tmp))
    crashed = sum(r["exit"] == CRASHED for r in rows)
    kinds = Counter(p.split(": ", 1)[-1].split(" ")[0] for r in rows for p in r["problems"])
    print("| suite | profile | crash points | crashed | recovered clean | wall s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.suite} | {args.profile} | {len(rows)} | {crashed} "
        f"| {sum(not r['problems'] for r in rows)} | {time.perf_counter() - start:.0f} |"
    )
    print("calls crashed before:", dict(Counter(r["call"] for r in rows)))
    for row in rows:
        for problem in row["problems"]:
            print(f"- k={row['k']} (before {row['call']}): {problem}")
    print("problem kinds:", dict(kinds) or "none")
    sys.exit(1 if any(r["problems"] for r in rows) else 0)


if __name__ == "__main__":
    main()
