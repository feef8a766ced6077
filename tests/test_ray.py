"""--executor ray: the same runs as the local executor, as Ray tasks on a local CPU cluster,
logged to one shared sqlite store; without Ray installed, one line and exit code 2."""

import sys

import pytest
from conftest import TOY_SUITE
from test_cli import harness

from harness.run.loading import load_suite
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store as Tracker

VOLATILE = {"eval_seconds", "train_seconds", "sec_per_step", "peak_memory_mb"}


def finals(outcomes):
    return {
        (o.spec.strategy, o.spec.seed): {k: v for k, v in o.metrics.items() if k not in VOLATILE}
        for o in outcomes
    }


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_tasks_finish_the_same_runs_as_the_local_executor(tmp_path, write_suite, ray_cluster):
    suite, registry = load_suite(write_suite(TOY_SUITE), seeds=[0])  # two runs, two workers
    local = run_suite(
        suite, registry, Tracker(f"sqlite:///{tmp_path / 'a' / 'm.db'}"), RunSettings(device="cpu")
    )
    tracker = Tracker(f"sqlite:///{tmp_path / 'b' / 'm.db'}")
    remote = run_suite(suite, registry, tracker, RunSettings(device="cpu", executor="ray"))
    assert [o.status for o in remote] == ["finished"] * 2
    a, b = finals(local), finals(remote)
    assert a.keys() == b.keys()
    for key in a:  # a Ray task has 1 torch thread here: allow rounding-level drift
        assert a[key].keys() == b[key].keys()
        for metric, value in a[key].items():
            assert b[key][metric] == pytest.approx(value, rel=1e-3, abs=1e-5), (key, metric)
    exp = tracker.client.get_experiment_by_name("tiny").experiment_id
    runs = tracker.client.search_runs([exp])
    kids = [r for r in runs if r.data.tags.get("harness.kind") == "run"]
    assert sorted(r.data.tags["status"] for r in kids) == ["finished"] * 2
    assert {r.data.tags["run_key"] for r in kids} == {s.run_key for s in suite.runs}
    parent = next(r for r in runs if r.data.tags.get("harness.kind") == "suite")
    assert {r.data.tags["mlflow.parentRunId"] for r in kids} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"
    again = run_suite(suite, registry, tracker, RunSettings(device="cpu", executor="ray"))
    assert [o.status for o in again] == ["skipped"] * 2  # the same run keys: nothing re-run


def test_executor_ray_without_ray_says_how_to_install_it(tmp_path, write_suite, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    (tmp_path / "store").mkdir()
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    result = harness("run", write_suite(TOY_SUITE), "--executor", "ray", "--tracking-uri", store)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "uv sync --extra ray" in lines[0], result.stderr
    assert "harness[ray]" in lines[0]


def test_ray_options_without_the_ray_executor_are_refused(write_suite):
    result = harness("run", write_suite(TOY_SUITE), "--gpus-per-run", "0.25")
    assert result.exit_code == 2 and "--executor ray" in result.stderr
