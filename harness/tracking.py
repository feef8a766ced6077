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
from pathlib import Path
from typing import Any

import harness
from harness.errors import HarnessError
from harness.figures import samples_png
from harness.suite import RunSpec, Suite

DEFAULT_DB = Path("results") / "mlflow.db"
COMPLETED = ("finished", "diverged")
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


class Tracker:
    """An MLflow tracking store: experiments per suite, runs tagged for tables."""

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no INFO chatter on the console
        self.uri = uri or default_tracking_uri()
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
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

    def completed_runs(self, experiment_id: str) -> dict[str, Any]:
        """Finished or diverged child runs by run key (re-runs skip them)."""
        runs = self.client.search_runs(
            [experiment_id], filter_string="tags.`harness.kind` = 'run'", max_results=50_000
        )
        return {r.data.tags["run_key"]: r for r in runs if r.data.tags.get("status") in COMPLETED}

    def start_suite(self, suite: Suite) -> str:
        """Create the parent run, with the suite YAML and resolved config as artifacts."""
        experiment_id = self.experiment_id(suite.config.name)
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

    def start_run(self, parent_id: str, spec: RunSpec) -> RunTracker:
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
        return RunTracker(self.client, run.info.run_id, spec)


class RunTracker:
    """One child run; a :class:`harness.trainer.MetricsSink`."""

    def __init__(self, client, run_id: str, spec: RunSpec):
        from mlflow.entities import Param

        self.client, self.run_id = client, run_id
        self._buffer: list = []
        params = [Param(k, v[:6000]) for k, v in flatten(spec.config).items()]
        params.append(Param("harness_version", harness.__version__))
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step) for k, v in values.items()]
        if len(self._buffer) >= 1000:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._buffer), 1000):
            self.client.log_batch(self.run_id, metrics=self._buffer[i : i + 1000])
        self._buffer = []

    def log_samples(self, ctx, step: int) -> None:
        self.flush()
        png = samples_png(ctx.fake, ctx.real.x, ctx.dataset.modes)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"step_{step:07d}.png"
            path.write_bytes(png)
            self.client.log_artifact(self.run_id, str(path), "samples")

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def finish(self, status: str) -> None:
        self.flush()
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS[status])
