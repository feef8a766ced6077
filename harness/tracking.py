"""MLflow: a parent run per suite invocation, a child run per (strategy, seed).

MLflow is imported lazily (it takes seconds) and metrics are buffered and sent in batches at
evaluation points, never one call per value.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import harness
from harness.errors import HarnessError
from harness.figures import samples_png
from harness.suite import RunSpec, Suite

DEFAULT_DB = Path("results") / "mlflow.db"
COMPLETED = ("finished", "diverged")
RESUMABLE = ("running", "interrupted")
MLFLOW_STATUS = {
    "finished": "FINISHED",
    "diverged": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB.resolve()}"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"constraint.params.c": "0.01", ...}`` for MLflow params."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return out


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def create_sqlite_store(db: Path) -> None:
    """Create a missing SQLite store atomically: MLflow's schema migrations run on a temporary
    file that is renamed into place, so a kill during them (seconds) leaves no half-built store."""
    from mlflow.tracking import MlflowClient

    if db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{uuid.uuid4().hex}")  # MLflow caches stores by URI
    MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
    tmp.replace(db)


class Tracker:
    """An MLflow tracking store: experiments per suite, runs tagged for tables."""

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no INFO chatter on the console
        self.uri = uri or default_tracking_uri()
        try:
            if self.uri.startswith("sqlite:///"):
                create_sqlite_store(Path(self.uri.removeprefix("sqlite:///")))
            if self.uri.startswith(("http://", "https://")):
                import requests

                requests.get(f"{self.uri.rstrip('/')}/health", timeout=5).raise_for_status()
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HarnessError(f"tracking store {self.uri} is unreachable: {first}") from None

    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri.removeprefix("sqlite:///"))
            location = (db.parent / "mlruns" / name).resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    @property
    def checkpoint_dir(self) -> Path:
        """Checkpoints live beside an embedded store, else under results/checkpoints."""
        if self.uri.startswith("sqlite:///"):
            return Path(self.uri.removeprefix("sqlite:///")).parent / "checkpoints"
        return Path("results") / "checkpoints"

    def existing_runs(self, experiment_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Child runs by run key: completed ones (re-runs skip them) and resumable ones
        (running when their process died, or interrupted: re-runs continue them)."""
        runs = self.client.search_runs(
            [experiment_id],
            filter_string="tags.`harness.kind` = 'run'",
            max_results=50_000,
            order_by=["attributes.start_time ASC"],
        )
        completed, resumable = {}, {}
        for run in runs:
            status, key = run.data.tags.get("status"), run.data.tags["run_key"]
            if status in COMPLETED:
                completed[key] = run
            elif status in RESUMABLE:
                resumable[key] = run
        return completed, {k: r for k, r in resumable.items() if k not in completed}

    def start_suite(self, suite: Suite) -> str:
        """Create the parent run, with the suite YAML and resolved config as artifacts.

        Parent runs of earlier invocations still RUNNING were killed (one invocation runs a
        suite at a time): they are closed as KILLED.
        """
        experiment_id = self.experiment_id(suite.config.name)
        stale = self.client.search_runs(
            [experiment_id],
            filter_string="tags.`harness.kind` = 'suite' and attributes.status = 'RUNNING'",
        )
        for run in stale:
            self.client.set_terminated(run.info.run_id, "KILLED")
        run = self.client.create_run(
            experiment_id,
            run_name=f"{suite.config.name}" + (f"-{suite.profile}" if suite.profile else ""),
            tags={
                "harness.kind": "suite",
                "profile": suite.profile or "default",
                "harness_version": harness.__version__,
                "git_commit": git_commit(),
                "suite_path": suite.path,
            },
        )
        run_id = run.info.run_id
        self.client.log_text(run_id, suite.text, "suite.yaml")
        self.client.log_dict(run_id, [spec.config for spec in suite.runs], "resolved.json")
        return run_id

    def end_suite(self, run_id: str, status: str = "finished") -> None:
        self.client.set_terminated(run_id, MLFLOW_STATUS[status])

    def start_run(self, parent_id: str, spec: RunSpec, resume: Any = None) -> RunTracker:
        """A new child run, or ``resume`` (an unfinished one) continued from its checkpoint."""
        checkpoint = self.checkpoint_dir / spec.run_key / "checkpoint.pt"
        if resume is not None:
            run_id = resume.info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, "status", "running")
            self.client.set_tag(run_id, "resumed_by", parent_id)
            return RunTracker(self.client, run_id, spec, checkpoint, resumed=True)
        checkpoint.unlink(missing_ok=True)  # left by a run this store no longer has
        experiment_id = self.client.get_run(parent_id).info.experiment_id
        run = self.client.create_run(
            experiment_id,
            run_name=f"{spec.strategy}-seed{spec.seed}",
            tags={
                "mlflow.parentRunId": parent_id,
                "harness.kind": "run",
                "strategy": spec.strategy,
                "seed": str(spec.seed),
                "run_key": spec.run_key,
                "status": "running",
                "loss": spec.loss.name,
                "constraint": spec.constraint.name,
            },
        )
        return RunTracker(self.client, run.info.run_id, spec, checkpoint)


class RunTracker:
    """One child run; a :class:`harness.trainer.MetricsSink`.

    Metrics are buffered and sent only when a checkpoint is written (and at the end), right
    after it: a run killed in between resumes from that checkpoint with the unsent buffer, and
    (key, step) pairs already in the store are never sent twice — no duplicates, no gaps.
    """

    def __init__(self, client, run_id: str, spec: RunSpec, checkpoint: Path, resumed=False):
        from mlflow.entities import Param

        self.client, self.run_id, self.checkpoint = client, run_id, checkpoint
        self._buffer: list[tuple[str, float, int, int]] = []
        self._sent: set[tuple[str, int]] | None = self._logged_steps() if resumed else None
        if not resumed:
            params = [Param(k, v[:6000]) for k, v in flatten(spec.config).items()]
            params.append(Param("harness_version", harness.__version__))
            for i in range(0, len(params), 100):
                client.log_batch(run_id, params=params[i : i + 100])

    def _logged_steps(self) -> set[tuple[str, int]]:
        run = self.client.get_run(self.run_id)
        return {
            (key, m.step)
            for key in run.data.metrics
            for m in self.client.get_metric_history(self.run_id, key)
        }

    def log(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._buffer += [(k, float(v), now, step) for k, v in values.items()]

    def flush(self) -> None:
        from mlflow.entities import Metric

        pending = self._buffer
        if self._sent is not None:
            pending = [m for m in pending if (m[0], m[3]) not in self._sent]
        metrics = [Metric(*m) for m in pending]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])
        self._buffer = []

    def save_checkpoint(self, state: dict) -> None:
        """Write-then-rename, then send the buffered metrics."""
        import torch

        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_suffix(f".tmp{os.getpid()}")
        torch.save({**state, "pending": self._buffer}, tmp)
        tmp.replace(self.checkpoint)
        self.flush()

    def load_checkpoint(self) -> dict | None:
        import torch

        if not self.checkpoint.exists():
            return None
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        self._buffer = state.pop("pending")
        self.flush()
        return state

    def log_samples(self, ctx, step: int) -> None:
        png = samples_png(ctx.fake, ctx.real.x, ctx.dataset.modes)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"step_{step:07d}.png"
            path.write_bytes(png)
            self.client.log_artifact(self.run_id, str(path), "samples")

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def finish(self, status: str) -> None:
        """Send what is left and close the run; a completed run's checkpoint is deleted."""
        self.flush()
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS[status])
        if status in COMPLETED:
            self.checkpoint.unlink(missing_ok=True)
