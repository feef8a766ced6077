"""Several invocations on one store, crashes at every tracking call, and what is left behind."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import TOY_SUITE

from harness.run.loading import load_suite
from harness.run.locks import claim
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store as Tracker

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from concurrency import race, tally  # noqa: E402
from kill_trials import check_store, harness_cmd, leftovers  # noqa: E402

SUITE = TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0]")


def test_two_invocations_racing_on_a_new_store_train_every_run_once(tmp_path, write_suite):
    path = write_suite(TOY_SUITE)
    (tmp_path / "store").mkdir()  # the folder exists; the store file is what they race for
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    codes, held = race(harness_cmd(str(path), uri, None, 2), 2)
    assert codes == [0, 0]
    counts = tally(uri, "tiny")
    assert counts["finished once"] == 4
    assert counts["duplicate runs"] == counts["doubled steps"] == counts["left RUNNING"] == 0
    assert check_store(uri, "tiny", str(path), None) == []
    assert leftovers(tmp_path / "store" / "mlflow.db") == []


def test_a_run_held_by_a_live_process_is_skipped_and_named(tmp_path, write_suite):
    suite, registry = load_suite(write_suite(SUITE))
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    held = tracker.claim_run(suite.runs[0].run_key)  # a live invocation training wgan-gp
    outcomes = run_suite(suite, registry, tracker, RunSettings(device="cpu", checkpoint_every=2))
    assert [o.status for o in outcomes] == ["held", "finished"]
    assert outcomes[0].error == f"held by pid {os.getpid()} on {os.uname().nodename}"
    held.release()
    outcomes = run_suite(suite, registry, tracker, RunSettings(device="cpu", checkpoint_every=2))
    assert [o.status for o in outcomes] == ["finished", "skipped"]


def test_only_parents_of_dead_invocations_are_closed(tmp_path, write_suite):
    suite, registry = load_suite(write_suite(SUITE))
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = tracker.client
    live = Tracker(tracker.uri)
    live_parent = live.start_suite(suite)  # still running: its invocation lock is held
    dead = Tracker(tracker.uri)
    dead_parent = dead.start_suite(suite)
    dead.invocation.fd, fd = -1, dead.invocation.fd
    os.close(fd)  # as when its process dies: the lock goes, the file and the parent stay
    run_suite(suite, registry, tracker, RunSettings(device="cpu", checkpoint_every=2))
    assert client.get_run(live_parent).info.status == "RUNNING"
    assert client.get_run(dead_parent).info.status == "KILLED"
    live.end_suite(live_parent)
    assert client.get_run(live_parent).info.status == "FINISHED"


def test_leftovers_of_dead_processes_are_cleaned_and_live_ones_kept(tmp_path, write_suite):
    suite, registry = load_suite(write_suite(SUITE))
    db = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{db}")
    checkpoints = tracker.checkpoint_dir
    (db.parent / f".{db.name}.0123abcd").write_bytes(b"half-built store")
    (checkpoints / "gone-key").mkdir(parents=True)
    (checkpoints / "gone-key" / "checkpoint.tmp4242").write_bytes(b"torn")
    (checkpoints / "empty-key").mkdir()
    (checkpoints / "dead.claim").write_text("4242 elsewhere")
    (checkpoints / "dead.invocation").write_text("4242 elsewhere")
    (checkpoints / "busy-key").mkdir()
    (checkpoints / "busy-key" / "checkpoint.tmp1").write_bytes(b"being written")
    busy = claim(checkpoints / "busy-key.claim")  # a live concurrent invocation's run
    Tracker(tracker.uri)  # the next start deletes the temporary store
    assert not (db.parent / f".{db.name}.0123abcd").exists()
    run_suite(suite, registry, tracker, RunSettings(device="cpu", checkpoint_every=2))
    assert sorted(p.name for p in checkpoints.rglob("*")) == [
        "busy-key",
        "busy-key.claim",
        "checkpoint.tmp1",
    ]
    busy.release()
    run_suite(suite, registry, tracker, RunSettings(device="cpu", checkpoint_every=2))
    assert leftovers(db) == []


def test_a_crash_before_every_tracking_call_is_recovered(tmp_path, write_suite):
    """os._exit before the k-th MlflowClient call, for every k, then a re-run: one complete
    FINISHED run per (strategy, seed), all params, every step once, nothing RUNNING, nothing
    left behind (see benchmarks/crash_points.py)."""
    text = SUITE.replace("steps: 6", "steps: 4").replace("log_every: 3", "log_every: 2")
    text = text.replace("every: 3, samples", "every: 4, samples")
    path = write_suite("\n".join(line for line in text.splitlines() if "wgan-gp" not in line))
    code = (
        "import sys; from pathlib import Path; import crash_points as c; "
        f"rows = c.crash_points({str(path)!r}, None, 2, Path({str(tmp_path)!r})); "
        "print(len(rows), sum(r['exit'] == c.CRASHED for r in rows)); "
        "[print(r) for r in rows if r['problems']]"
    )
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    points, crashed = map(int, lines[0].split())
    assert lines[1:] == []  # no crash point left a problem
    assert points >= 15 and crashed == points - 1  # the last point is after the last call
