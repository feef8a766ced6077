"""Run a suite: every (strategy, seed) run not already finished, tracked in MLflow. A run that
diverges or raises is recorded as such and the suite goes on.

One worker function, :func:`run_job`, trains and records one run wherever it executes: in
this process (``jobs=1``), in a local worker process (``jobs=N``) or as a Ray task
(``executor="ray"``). The executors only decide where jobs run and hand back outcomes.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.registry import Registry
from harness.suite import RunSpec, Suite
from harness.tracking import Tracker
from harness.trainer import train

EXECUTORS = ("local", "ray")
RAY_MISSING = "--executor ray needs Ray: `uv sync --extra ray` (or `pip install 'harness[ray]'`)"


@dataclass
class Outcome:
    spec: RunSpec
    status: str  # finished | diverged | failed | skipped
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Job:
    """Everything one run needs, picklable: it travels to worker processes and Ray tasks."""

    tracking_uri: str
    parent_id: str
    spec: RunSpec
    resume_id: str | None = None  # an unfinished MLflow run to continue
    device: str = "auto"
    data_dir: Path | None = None
    checkpoint_every: int = 500
    compile: bool = False
    threads: int | None = None  # torch threads in a worker; None: leave as is


class Progress:
    """Callbacks the CLI implements to show progress; all optional."""

    def run_started(self, spec: RunSpec) -> Callable[[int, dict], None] | None: ...

    def run_ended(self, outcome: Outcome) -> None: ...


def run_job(
    job: Job,
    tracker: Tracker | None = None,
    registry: Registry | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Train one run and record it in the tracking store: the worker function every executor
    runs. In a worker it opens its own tracker connection and registry."""
    if job.threads:
        torch.set_num_threads(job.threads)
    tracker = tracker or Tracker(job.tracking_uri)
    resume = tracker.client.get_run(job.resume_id) if job.resume_id else None
    run = tracker.start_run(job.parent_id, job.spec, resume=resume)
    registry = registry or Registry(job.spec.plugins)
    progress = progress or Progress()
    try:
        result = train(
            job.spec,
            registry=registry,
            device=job.device,
            data_dir=job.data_dir,
            sink=run,
            progress=progress.run_started(job.spec),
            checkpoint_every=job.checkpoint_every,
            compile=job.compile,
        )
    except KeyboardInterrupt:
        run.finish("interrupted")
        raise
    except Exception as exc:
        run.log_text(traceback.format_exc(), "traceback.txt")
        run.finish("failed")
        return Outcome(job.spec, "failed", error=f"{type(exc).__name__}: {exc}")
    run.finish(result.status)
    return Outcome(job.spec, result.status, result.metrics)


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
    compile: bool = False,
    executor: str = "local",
    address: str | None = None,
    gpus_per_run: float = 0.0,
    cpus_per_run: float = 1.0,
) -> list[Outcome]:
    """Train every run of ``suite`` not already completed in the tracking store.

    ``executor="local"`` trains ``jobs`` runs at a time (``jobs=1``: in this process, with
    per-step progress; more: separate processes sharing the tracking store and splitting the
    cores). ``executor="ray"`` makes each run a Ray task with ``cpus_per_run`` CPUs and
    ``gpus_per_run`` GPUs on the cluster at ``address`` (None: the one already initialised
    in this process, else a new local one); every task logs to the same tracking store.
    """
    if executor not in EXECUTORS:
        raise HarnessError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise HarnessError(RAY_MISSING) from None
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
            resume = resumable.get(spec.run_key)
            todo.append(
                Job(
                    tracker.uri,
                    parent_id,
                    spec,
                    resume and resume.info.run_id,
                    device=str(device),
                    data_dir=data_dir,
                    checkpoint_every=checkpoint_every,
                    compile=compile,
                )
            )
    status = "finished"
    try:
        if executor == "local" and jobs == 1:
            for job in todo:
                outcome = run_job(job, tracker, registry, progress)
                outcomes[job.spec.run_key] = outcome
                progress.run_ended(outcome)
        elif todo:
            if executor == "ray":
                results = _ray_tasks(todo, address, cpus_per_run, gpus_per_run)
            else:
                results = _local_processes(todo, jobs)
            with contextlib.closing(results):
                for job in todo:  # executors start every job at once; bars show them queued
                    progress.run_started(job.spec)
                for job, result in results:
                    try:
                        outcome = result()
                    except Exception as exc:  # the worker died before it could record the run
                        error = f"{type(exc).__name__}: {exc}"
                        outcome = Outcome(job.spec, "failed", error=error)
                    outcomes[job.spec.run_key] = outcome
                    progress.run_ended(outcome)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        tracker.end_suite(parent_id, status)
    return [outcomes[spec.run_key] for spec in suite.runs]


Results = Iterator[tuple[Job, Callable[[], Outcome]]]


def _local_processes(jobs: list[Job], workers: int) -> Results:
    """Each job in one of ``workers`` spawned processes, the machine's cores split among them;
    yields (job, its outcome getter) as they complete."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_job, replace(job, threads=threads)): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result


def _ray_tasks(jobs: list[Job], address: str | None, cpus: float, gpus: float) -> Results:
    """Each job a Ray task holding ``cpus`` CPUs (its torch threads) and ``gpus`` GPUs (a
    fraction shares one); yields (job, its outcome getter) as they complete. Tasks are not
    retried: a run whose worker died stays resumable and the next invocation continues it."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_job)
    threads = max(1, int(cpus))
    refs = {task.remote(replace(job, threads=threads)): job for job in jobs}
    pending = list(refs)
    try:
        while pending:
            (done,), pending = ray.wait(pending, num_returns=1)
            yield refs[done], lambda done=done: ray.get(done)
    finally:
        for ref in pending:  # interrupted: their runs stay "running", hence resumable
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
