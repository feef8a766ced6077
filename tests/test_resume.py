import random
import sys
from pathlib import Path

import pytest
from conftest import TOY_SUITE
from mlflow.tracking import MlflowClient

from harness.run.loading import load_suite
from harness.run.runner import Progress, RunSettings, run_suite
from harness.run.store import Store as Tracker

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from kill_trials import (  # noqa: E402
    check_store,
    harness_cmd,
    kill_when,
    leftovers,
    run_to_end,
    training,
)

SUITE = TOY_SUITE.replace("steps: 6", "steps: 12").replace("log_every: 3", "log_every: 2")
SUITE = SUITE.replace("every: 3, samples", "every: 4, samples").replace(
    "seeds: [0, 1]", "seeds: [0]"
)
SUITE = SUITE.replace("metrics: [mode_coverage]", "metrics: [mode_coverage, stability, cost]")


class InterruptAt(Progress):
    """Ctrl-C at a given step of a given strategy."""

    def __init__(self, strategy: str, step: int):
        self.strategy, self.step = strategy, step

    def run_started(self, spec):
        def update(step, values):
            if spec.strategy == self.strategy and step == self.step:
                raise KeyboardInterrupt

        return update


def histories(uri: str, experiment: str) -> dict:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([exp.experiment_id]):
        if run.data.tags.get("harness.kind") != "run":
            continue
        for key in run.data.metrics:
            if key in {"eval_seconds", "train_seconds", "sec_per_step", "peak_memory_mb"}:
                continue
            history = client.get_metric_history(run.info.run_id, key)
            out[(run.data.tags["strategy"], key)] = sorted((m.step, m.value) for m in history)
    return out


def straight_and_interrupted(path, tmp_path):
    """The suite at ``path`` trained straight through into store a, and into store b
    interrupted at bce's step 10 (checkpoints every 2 steps)."""
    suite, registry = load_suite(path)
    straight = Tracker(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    run_suite(suite, registry, straight, RunSettings(device="cpu", checkpoint_every=2))
    resumed = Tracker(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    with pytest.raises(KeyboardInterrupt):
        run_suite(
            suite,
            registry,
            resumed,
            RunSettings(device="cpu", checkpoint_every=2),
            progress=InterruptAt("bce", 10),
        )
    return suite, registry, straight, resumed


def test_interrupted_run_resumes_bit_identical_in_the_same_mlflow_run(tmp_path, write_suite):
    path = write_suite(SUITE)
    suite, registry, straight, resumed = straight_and_interrupted(path, tmp_path)
    exp = resumed.client.get_experiment_by_name("tiny").experiment_id
    kids = {
        r.data.tags["strategy"]: r
        for r in resumed.client.search_runs([exp])
        if r.data.tags.get("harness.kind") == "run"
    }
    assert kids["bce"].data.tags["status"] == "interrupted" and kids["bce"].info.status == "KILLED"
    assert (resumed.checkpoint_dir / suite.runs[1].run_key / "checkpoint.pt").exists()

    outcomes = run_suite(suite, registry, resumed, RunSettings(device="cpu", checkpoint_every=2))
    assert [o.status for o in outcomes] == ["skipped", "finished"]
    assert histories(straight.uri, "tiny") == histories(resumed.uri, "tiny")
    assert not check_store(resumed.uri, "tiny", str(path), None)
    kids = [
        r for r in resumed.client.search_runs([exp]) if r.data.tags.get("harness.kind") == "run"
    ]
    assert len(kids) == 2  # the interrupted run was continued, not duplicated
    assert not (resumed.checkpoint_dir / suite.runs[1].run_key / "checkpoint.pt").exists()


def test_sigkill_at_random_moments_leaves_one_complete_run_each(tmp_path, write_suite):
    """Two real SIGKILLs of `harness run` at random moments, one while it trains a run (a
    claim is held) and one before, during its start-up, then a run to the end: one complete
    run per (strategy, seed). benchmarks/kill_trials.py draws many more, over the whole run."""
    text = SUITE.replace("steps: 12", "steps: 300").replace(
        "every: 4, samples", "every: 100, samples"
    )
    text = text.replace("log_every: 2", "log_every: 10").replace("seeds: [0]", "seeds: [0, 1]")
    path, db = write_suite(text), tmp_path / "mlflow.db"
    cmd = harness_cmd(str(path), f"sqlite:///{db}", None, 20)
    rng = random.Random(1)
    killed, startup = kill_when(cmd, training(db), rng.uniform(0.0, 1.5))
    assert killed  # mid-training: 4 runs of 300 steps outlast the delay
    killed, _ = kill_when(cmd, lambda: True, rng.uniform(0.0, startup))
    assert killed
    run_to_end(cmd)
    assert check_store(f"sqlite:///{db}", "tiny", str(path), None) == []
    assert leftovers(db) == []


def test_a_new_run_ignores_a_checkpoint_its_store_does_not_know(tmp_path, write_suite):
    suite, registry = load_suite(write_suite(SUITE))
    straight = Tracker(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    run_suite(suite, registry, straight, RunSettings(device="cpu", checkpoint_every=2))

    db = tmp_path / "b" / "mlflow.db"
    with pytest.raises(KeyboardInterrupt):
        run_suite(
            suite,
            registry,
            Tracker(f"sqlite:///{db}"),
            RunSettings(device="cpu", checkpoint_every=2),
            progress=InterruptAt("bce", 10),
        )
    fresh = Tracker(f"sqlite:///{db.with_name('fresh.db')}")  # same checkpoints folder
    outcomes = run_suite(suite, registry, fresh, RunSettings(device="cpu", checkpoint_every=2))
    assert [o.status for o in outcomes] == ["finished", "finished"]
    assert histories(straight.uri, "tiny") == histories(fresh.uri, "tiny")


def test_a_store_is_created_whole_or_not_at_all(tmp_path, monkeypatch):
    from harness.run.store import create_sqlite_store

    db = tmp_path / "store" / "mlflow.db"

    def killed(*args, **kwargs):  # the process dies while MLflow migrates the new schema
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(MlflowClient, "search_experiments", killed)
        with pytest.raises(KeyboardInterrupt):
            create_sqlite_store(db)
    assert not db.exists()  # the next start builds it from scratch, not on a half-migrated file
    create_sqlite_store(db)
    assert MlflowClient(f"sqlite:///{db}").search_experiments()  # the Default experiment


class Planted:
    """A pickle that runs a shell command when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_checkpoint_does_not_run_and_the_run_starts_over(
    tmp_path, write_suite, caplog
):
    import torch

    suite, registry, straight, resumed = straight_and_interrupted(write_suite(SUITE), tmp_path)
    checkpoint = resumed.checkpoint_dir / suite.runs[1].run_key / "checkpoint.pt"
    assert checkpoint.exists()  # a resumable run, whose checkpoint a neighbour replaces
    marker = tmp_path / "code-ran"
    torch.save({"step": 10, "payload": Planted(marker)}, checkpoint)
    with caplog.at_level("WARNING", logger="harness"):
        outcomes = run_suite(suite, registry, resumed, RunSettings(device="cpu"))
    assert not marker.exists()
    assert [o.status for o in outcomes] == ["skipped", "finished"]
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "trains again from step 0" in refused[0]
    assert histories(straight.uri, "tiny") == histories(resumed.uri, "tiny")  # from scratch
