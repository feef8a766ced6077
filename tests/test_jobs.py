"""--threads is a logged setting, restored after the run; the default --jobs is the usable cores
capped by the runs to train (tests/test_executors.py runs it end to end)."""

import os

import torch
from conftest import TOY_SUITE

from harness.run.loading import load_suite
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store as Tracker


def test_threads_is_a_logged_setting_and_restored_after_the_run(tmp_path, write_suite, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    suite, registry = load_suite(write_suite(TOY_SUITE), seeds=[0])
    tracker = Tracker(f"sqlite:///{tmp_path / 'm.db'}")
    before = torch.get_num_threads()
    run_suite(suite, registry, tracker, RunSettings(device="cpu", threads=3))
    assert torch.get_num_threads() == before
    exp = tracker.client.get_experiment_by_name("tiny").experiment_id
    kids = [
        r for r in tracker.client.search_runs([exp]) if r.data.tags.get("harness.kind") == "run"
    ]
    assert {r.data.params["torch_threads"] for r in kids} == {"3"}


def test_default_jobs_are_the_usable_cores_capped_by_the_runs(monkeypatch):
    from harness.run.executors import default_jobs, usable_cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5})  # not the host's count
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert usable_cores() == 3
    assert [default_jobs(n, "cpu") for n in (0, 1, 2, 3, 12)] == [1, 1, 2, 3, 3]
    assert default_jobs(12, "cuda:0") == default_jobs(12, "cuda") == 1  # one process shares it


def test_more_threads_or_jobs_than_usable_cores_are_one_line(tmp_path, write_suite, monkeypatch):
    import pytest

    from harness.core.errors import HarnessError

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    suite, registry = load_suite(write_suite(TOY_SUITE), seeds=[0])
    store = Tracker(f"sqlite:///{tmp_path / 'm.db'}")
    for settings, option in (
        (RunSettings(threads=2000), "--threads 2000"),
        (RunSettings(jobs=3), "--jobs 3"),
    ):
        with pytest.raises(HarnessError, match=f"{option}: give 1 to 2"):
            run_suite(suite, registry, store, settings)
    assert not store.checkpoint_dir.exists()  # refused before anything was written
