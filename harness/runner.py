"""Run a suite: every (strategy, seed) run in turn, tracked in MLflow, skipping finished ones.
A run that diverges or raises is recorded as such and the suite goes on."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.registry import Registry
from harness.suite import RunSpec, Suite
from harness.tracking import Tracker
from harness.trainer import train


@dataclass
class Outcome:
    spec: RunSpec
    status: str  # finished | diverged | failed | skipped
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class Progress:
    """Callbacks the CLI implements to show progress; all optional."""

    def run_started(self, spec: RunSpec) -> Callable[[int, dict], None] | None: ...

    def run_ended(self, outcome: Outcome) -> None: ...


def run_suite(
    suite: Suite,
    registry: Registry,
    tracker: Tracker,
    *,
    device: str = "auto",
    data_dir: Path | None = None,
    progress: Progress | None = None,
    checkpoint_every: int = 500,
) -> list[Outcome]:
    """Train every run of ``suite`` not already completed in the tracking store."""
    progress = progress or Progress()
    parent_id = tracker.start_suite(suite)
    completed, resumable = tracker.existing_runs(tracker.experiment_id(suite.config.name))
    outcomes = []
    status = "finished"
    try:
        for spec in suite.runs:
            if spec.run_key in completed:
                outcome = Outcome(spec, "skipped", dict(completed[spec.run_key].data.metrics))
            else:
                run = tracker.start_run(parent_id, spec, resume=resumable.get(spec.run_key))
                outcome = _run_one(
                    spec, run, registry, progress, device, data_dir, checkpoint_every
                )
            outcomes.append(outcome)
            progress.run_ended(outcome)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        tracker.end_suite(parent_id, status)
    return outcomes


def _run_one(spec, run, registry, progress, device, data_dir, checkpoint_every) -> Outcome:
    try:
        result = train(
            spec,
            registry=registry,
            device=device,
            data_dir=data_dir,
            sink=run,
            progress=progress.run_started(spec),
            checkpoint_every=checkpoint_every,
        )
    except KeyboardInterrupt:
        run.finish("interrupted")
        raise
    except Exception as exc:
        run.log_text(traceback.format_exc(), "traceback.txt")
        run.finish("failed")
        return Outcome(spec, "failed", error=f"{type(exc).__name__}: {exc}")
    run.finish(result.status)
    return Outcome(spec, result.status, result.metrics)
