"""Run a suite: every (strategy, seed) run in turn, tracked in MLflow, skipping finished ones.
A run that diverges or raises is recorded as such and the suite goes on."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch

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
    jobs: int = 1,
) -> list[Outcome]:
    """Train every run of ``suite`` not already completed in the tracking store, ``jobs`` at a
    time (separate processes sharing the tracking store and the machine's cores)."""
    progress = progress or Progress()
    parent_id = tracker.start_suite(suite)
    completed, resumable = tracker.existing_runs(tracker.experiment_id(suite.config.name))
    outcomes: dict[str, Outcome] = {}
    todo = []
    for spec in suite.runs:
        if spec.run_key in completed:
            outcomes[spec.run_key] = Outcome(
                spec, "skipped", dict(completed[spec.run_key].data.metrics)
            )
            progress.run_ended(outcomes[spec.run_key])
        else:
            todo.append(spec)
    status = "finished"
    try:
        if jobs == 1:
            for spec in todo:
                run = tracker.start_run(parent_id, spec, resume=resumable.get(spec.run_key))
                outcome = _run_one(
                    spec, run, registry, progress, device, data_dir, checkpoint_every
                )
                outcomes[spec.run_key] = outcome
                progress.run_ended(outcome)
        else:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                futures = {}
                for spec in todo:
                    resume = resumable.get(spec.run_key)
                    args = (tracker.uri, parent_id, spec, resume and resume.info.run_id)
                    kwargs = dict(device=str(device), data_dir=data_dir, threads=threads)
                    futures[
                        pool.submit(_worker, *args, checkpoint_every=checkpoint_every, **kwargs)
                    ] = spec
                    progress.run_started(spec)
                for future in as_completed(futures):
                    spec = futures[future]
                    try:
                        outcome = future.result()
                    except Exception as exc:  # the worker died before it could record the run
                        outcome = Outcome(spec, "failed", error=f"{type(exc).__name__}: {exc}")
                    outcomes[spec.run_key] = outcome
                    progress.run_ended(outcome)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        tracker.end_suite(parent_id, status)
    return [outcomes[spec.run_key] for spec in suite.runs]


def _worker(uri, parent_id, spec, resume_id, *, device, data_dir, threads, checkpoint_every):
    """One run in a worker process: its own tracker connection, registry and thread budget."""
    torch.set_num_threads(threads)
    tracker = Tracker(uri)
    resume = tracker.client.get_run(resume_id) if resume_id else None
    run = tracker.start_run(parent_id, spec, resume=resume)
    registry = Registry(spec.plugins)
    return _run_one(spec, run, registry, Progress(), device, data_dir, checkpoint_every)


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
