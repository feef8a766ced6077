"""Storage faults: a read-only results folder, database or mlruns/, a full disk. Each gives one
line naming the path and the problem and exit 2 before training (or fails only the run it hit
during training), never a traceback, never a parent run left RUNNING.

Read-only and full filesystems are real mounts (root can write through permission bits), so
these tests need root and a kernel that lets it mount; elsewhere they are skipped.
"""

import contextlib
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TOY_SUITE
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from harness.cli import app
from harness.run.store import create_sqlite_store

SUITE = TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0]")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` (a file or folder) read-only for everyone, root included, for the block."""
    mount("--bind", str(path), str(path))
    try:
        mount("-o", "remount,ro,bind", str(path))
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)  # MLflow keeps it open


def can_mount(tmp: Path) -> bool:
    if os.geteuid() != 0:
        return False
    target = tmp / "probe"
    target.mkdir()
    try:
        with read_only(target):
            return True
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False


@pytest.fixture
def mounts(tmp_path):
    if not can_mount(tmp_path):
        pytest.skip("needs root and mount(8)")


def run(suite: Path, db: Path):
    result = CliRunner().invoke(app, ["run", str(suite), "--tracking-uri", f"sqlite:///{db}"])
    return result.exit_code, result.output


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def nothing_running(db: Path) -> None:
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []


def test_read_only_results_folder_is_one_line_before_training(tmp_path, mounts, write_suite):
    suite = write_suite(SUITE)
    results = tmp_path / "results"
    results.mkdir()
    with read_only(results):
        code, output = run(suite, results / "mlflow.db")
    assert code == 2
    line = one_line(output)
    assert str(results) in line and "Read-only file system" in line
    assert list(results.iterdir()) == []


@pytest.mark.parametrize("part", ["mlflow.db", "mlruns", "checkpoints"])
def test_read_only_store_parts_are_one_line_before_training(tmp_path, mounts, write_suite, part):
    suite = write_suite(SUITE)
    db = tmp_path / "results" / "mlflow.db"
    create_sqlite_store(db)
    (db.parent / "mlruns").mkdir()
    (db.parent / "checkpoints").mkdir()
    with read_only(db.parent / part):
        code, output = run(suite, db)
    assert code == 2
    line = one_line(output)
    assert str(db.parent / part) in line and "Read-only file system" in line
    nothing_running(db)


def test_full_disk_is_one_line_before_training(tmp_path, mounts, write_suite):
    suite = write_suite(SUITE)
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk))
    try:
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
        code, output = run(suite, disk / "mlflow.db")
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert code == 2
    line = one_line(output)
    assert str(disk) in line and "No space left on device" in line


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_disk_that_fills_during_training_stops_the_suite_in_one_line(
    tmp_path, mounts, write_suite, jobs
):
    """A few KB left: the store refuses a write mid-run. One line names the store and the
    cause, exit 2; once space is freed the next invocation resumes and finishes every run."""
    suite = write_suite(
        SUITE.replace("steps: 6", "steps: 60").replace("log_every: 3", "log_every: 2")
    )
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk))
    try:
        db = disk / "mlflow.db"
        make = "import pathlib, harness.run.store as s; s.create_sqlite_store(pathlib.Path(%r))"
        make %= str(db)
        subprocess.run([sys.executable, "-c", make], check=True)  # in a process: files close
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 120 * 1024))  # ~120 KB left
        args = [sys.executable, "-m", "harness.cli", "run", str(suite), "--jobs", jobs]
        args += ["--tracking-uri", f"sqlite:///{db}"]
        result = subprocess.run(args, capture_output=True, text=True)
        (disk / "filler").unlink()
        again = subprocess.run(args, capture_output=True, text=True)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert str(db) in result.stderr and "o space left on device" in result.stderr
    assert again.returncode == 0, again.stderr


def test_disk_full_during_training_fails_only_that_run(tmp_path, write_suite, monkeypatch):
    """A checkpoint write that hits a full disk fails its run with the reason; the suite goes on
    and closes its parent; no temporary checkpoint is left."""
    import torch

    suite = write_suite(SUITE)
    db = tmp_path / "results" / "mlflow.db"
    db.parent.mkdir()
    save = torch.save

    def full(obj, path, *args, **kwargs):
        if "wgan-gp" in str(getattr(full, "strategy", "")):
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return save(obj, path, *args, **kwargs)

    import harness.run.store

    start_run = harness.run.store.Store.start_run

    def remember(self, parent_id, spec, resume=None):
        full.strategy = spec.strategy
        return start_run(self, parent_id, spec, resume)

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(harness.run.store.Store, "start_run", remember)
    code, output = run(suite, db)
    assert code == 1, output
    assert "failed: wgan-gp seed 0: OSError" in output and "No space left on device" in output
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    status = {r.data.tags.get("strategy", "parent"): r.data.tags.get("status") for r in runs}
    assert status == {"wgan-gp": "failed", "bce": "finished", "parent": None}
    nothing_running(db)
    assert list((db.parent / "checkpoints").rglob("checkpoint.tmp*")) == []
