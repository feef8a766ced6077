"""SIGTERM, what a cluster scheduler sends at a time limit: `harness run --jobs 2` stops its
workers (none is left behind), the runs in training are marked interrupted, one line says so,
and the next invocation resumes them."""

import os
import signal
import subprocess
import sys
import time

import psutil
from conftest import TOY_SUITE
from mlflow.tracking import MlflowClient

SUITE = TOY_SUITE.replace("steps: 6", "steps: 3000").replace("seeds: [0, 1]", "seeds: [0]")
SUITE = SUITE.replace("every: 3, samples", "every: 1000, samples").replace(
    "log_every: 3", "log_every: 50"
)


def test_sigterm_stops_the_workers_and_leaves_the_runs_resumable(tmp_path, write_suite):
    path, db = write_suite(SUITE), tmp_path / "mlflow.db"
    cmd = [sys.executable, "-m", "harness.cli", "run", str(path), "--jobs", "2"]
    cmd += ["--tracking-uri", f"sqlite:///{db}", "--checkpoint-every", "100"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(  # as a shell starts a background job: SIGINT ignored (`... &`)
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    saved = lambda: list((db.parent / "checkpoints").glob("*/checkpoint.pt"))  # noqa: E731
    deadline = time.monotonic() + 120
    while len(saved()) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(saved()) == 2, "both workers train a run, checkpointed"
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == [
        "terminated (SIGTERM): runs in training were marked interrupted; run again to resume"
    ]
    time.sleep(0.5)
    assert not [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    kids = [r for r in runs if r.data.tags.get("harness.kind") == "run"]
    # interrupted, or (a signal can land where Python drops it) still running: both resume
    assert len(kids) == 2 and {r.data.tags["status"] for r in kids} <= {"interrupted", "running"}
    again = subprocess.Popen(
        [*cmd, "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    plan = next(line for line in again.stdout if " runs: " in line or "finished" in line)
    again.send_signal(signal.SIGTERM)  # it resumed them: enough; stopped the same way
    again.communicate(timeout=60)
    assert "training 2 of 2 runs: resuming an unfinished run (2)" in plan
    assert again.returncode == 143
