import pytest
from conftest import TOY_SUITE

from harness.runner import run_suite
from harness.suite import load_suite
from harness.tracking import Tracker

VOLATILE = {"eval_seconds", "train_seconds", "sec_per_step", "peak_memory_mb"}


def finals(outcomes):
    return {
        (o.spec.strategy, o.spec.seed): {k: v for k, v in o.metrics.items() if k not in VOLATILE}
        for o in outcomes
    }


def test_jobs_give_the_same_table_as_one_job(tmp_path, write_suite):
    suite, registry = load_suite(write_suite(TOY_SUITE))
    one = run_suite(suite, registry, Tracker(f"sqlite:///{tmp_path / 'a' / 'm.db'}"), device="cpu")
    tracker = Tracker(f"sqlite:///{tmp_path / 'b' / 'm.db'}")
    many = run_suite(suite, registry, tracker, device="cpu", jobs=2)
    assert [o.status for o in many] == ["finished"] * 4
    a, b = finals(one), finals(many)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].keys() == b[key].keys()
        for metric, value in a[key].items():  # worker threads differ: allow rounding-level drift
            assert b[key][metric] == pytest.approx(value, rel=1e-3, abs=1e-5), (key, metric)
    exp = tracker.client.get_experiment_by_name("tiny").experiment_id
    kids = [
        r for r in tracker.client.search_runs([exp]) if r.data.tags.get("harness.kind") == "run"
    ]
    assert sorted(r.data.tags["status"] for r in kids) == ["finished"] * 4
