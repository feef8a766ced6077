import platform

import torch
from conftest import TOY_SUITE

from harness.run.loading import load_suite
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store as Tracker

VOLATILE = {"eval_seconds", "train_seconds", "sec_per_step", "peak_memory_mb"}


def finals(outcomes):
    return {
        (o.spec.strategy, o.spec.seed): {k: v for k, v in o.metrics.items() if k not in VOLATILE}
        for o in outcomes
    }


def test_jobs_give_the_same_table_as_one_job(tmp_path, write_suite):
    suite, registry = load_suite(write_suite(TOY_SUITE))
    one = run_suite(
        suite, registry, Tracker(f"sqlite:///{tmp_path / 'a' / 'm.db'}"), RunSettings(device="cpu")
    )
    tracker = Tracker(f"sqlite:///{tmp_path / 'b' / 'm.db'}")
    many = run_suite(suite, registry, tracker, RunSettings(device="cpu", jobs=2))
    assert [o.status for o in many] == ["finished"] * 4
    assert finals(one) == finals(many)  # one torch thread per run either way: identical
    exp = tracker.client.get_experiment_by_name("tiny").experiment_id
    kids = [
        r for r in tracker.client.search_runs([exp]) if r.data.tags.get("harness.kind") == "run"
    ]
    assert sorted(r.data.tags["status"] for r in kids) == ["finished"] * 4
    for run in kids:  # provenance, logged by every run
        params = run.data.params
        assert params["torch_threads"] == "1" and params["device"] == "cpu"
        assert params["torch_version"] == str(torch.__version__)
        assert params["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert params["python_version"] == platform.python_version()
        assert params["eval_protocol"] == "gauss-3sigma-v1:n200"


def test_threads_is_a_logged_setting_and_restored_after_the_run(tmp_path, write_suite):
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
