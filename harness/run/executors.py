"""Where queued jobs run: spawned local processes (``--jobs N``) or Ray tasks (``--executor
ray``). An executor only decides where :func:`harness.run.runner.run_job` runs and hands back
each job's outcome as it completes; it knows nothing of training or the store."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from harness.core.errors import HarnessError

EXECUTORS = ("local", "ray")
RAY_MISSING = "--executor ray needs Ray: `uv sync --extra ray` (or `pip install 'harness[ray]'`)"

Results = Iterator[tuple[Any, Callable[[], Any]]]  # (job, its outcome getter) as they complete


def check_executor(executor: str) -> None:
    """A known executor whose library is installed, or a one-line error."""
    if executor not in EXECUTORS:
        raise HarnessError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise HarnessError(RAY_MISSING) from None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def default_jobs(runs: int, device: str) -> int:
    """Runs trained at once when ``--jobs`` is not given: one per usable core (each run has
    its own torch threads) but no more than there are runs to train; one on a GPU, which the
    runs of one process already share (stacked members are the way to batch them)."""
    if device.startswith("cuda"):
        return 1
    return max(1, min(usable_cores(), runs))


def local_processes(worker: Callable, jobs: list, workers: int) -> Results:
    """``worker(job)`` for each job in one of ``workers`` spawned processes; yields (job, its
    outcome getter) as they complete."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(worker, job): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result


def ray_tasks(
    worker: Callable, jobs: list, address: str | None, cpus: float, gpus: float
) -> Results:
    """``worker(job)`` for each job as a Ray task holding ``cpus`` CPUs and ``gpus`` GPUs (a
    fraction shares one) on the cluster at ``address`` (None: the one already initialised in
    this process, else a new local one); yields (job, its outcome getter) as they complete.
    Tasks are not retried: a run whose worker died stays resumable and the next invocation
    continues it."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(worker)
    refs = {task.remote(job): job for job in jobs}
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
