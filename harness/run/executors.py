"""Where queued jobs run: spawned local processes (``--jobs N``) or Ray tasks (``--executor
ray``). An executor only decides where :func:`harness.run.runner.run_job` runs and hands back
each job's outcome as it completes; it knows nothing of training or the store."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
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


def check_resources(jobs: int | None, threads: int, executor: str = "local") -> None:
    """Refuse, in one line, more processes or threads than this machine can run at once: each
    local worker is a process of about a gigabyte, and torch threads beyond the usable cores
    only wait (4,002 threads were started on 2 cores by ``--threads 2000``)."""
    cores = usable_cores()
    if threads < 1 or threads > cores:
        raise HarnessError(
            f"--threads {threads}: give 1 to {cores}, the cores this process may use"
        )
    if executor == "local" and jobs is not None and not 1 <= jobs <= cores:
        raise HarnessError(
            f"--jobs {jobs}: give 1 to {cores}, the cores this process may use (each run "
            "trains in a process of its own)"
        )


def default_jobs(runs: int, device: str) -> int:
    """Runs trained at once when ``--jobs`` is not given: one per usable core (each run has
    its own torch threads) but no more than there are runs to train; one on a GPU, which the
    runs of one process already share (stacked members are the way to batch them)."""
    if device.startswith("cuda"):
        return 1
    return max(1, min(usable_cores(), runs))


def local_processes(worker: Callable, jobs: list, workers: int) -> Results:
    """``worker(job)`` for each job in one of ``workers`` spawned processes (those started
    ahead by :func:`workers_ahead` when there are as many); yields (job, its outcome getter) as
    they complete. Closed early (Ctrl-C, SIGTERM, an error), it stops the workers: queued jobs
    are dropped, a worker in a run ends it as interrupted (resumable) and exits; none is left
    behind."""
    pool = _ahead.pop(workers, None) or _pool(workers)
    release_workers_ahead()
    done = False
    with _pipe_errors_not_signals():
        try:
            futures = {pool.submit(_run_one, worker, job): job for job in jobs}
            for future in as_completed(futures):
                yield futures[future], future.result
            done = True
        finally:
            if done:
                pool.shutdown(wait=True)
            else:
                stop(pool)


_ahead: dict[int, ProcessPoolExecutor] = {}  # workers started ahead, by their number


@contextlib.contextmanager
def workers_ahead(workers: int, warm_up: Callable[[], None]) -> Iterator[None]:
    """Start ``workers`` worker processes now, each running ``warm_up`` (importing what its
    jobs need: seconds) while this process goes on preparing; the next :func:`local_processes`
    with as many workers takes them. Those not taken are stopped on leaving, however it is
    left."""
    with _pipe_errors_not_signals():
        pool = _pool(workers, warm_up)
        for _ in range(workers):  # each submission starts one more process
            pool.submit(int)
        _ahead[workers] = pool
        try:
            yield
        finally:
            release_workers_ahead()


def release_workers_ahead() -> None:
    """Stop the workers started ahead that no executor took."""
    while _ahead:
        stop(_ahead.popitem()[1], grace=5.0)


def _pool(workers: int, warm_up: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(warm_up,)
    )


@contextlib.contextmanager
def _pipe_errors_not_signals() -> Iterator[None]:
    """SIGPIPE ignored while a pool lives: its manager thread may write to a worker that has
    exited (stopped, or crashed), an EPIPE the pool handles, where the CLI's SIG_DFL (set for
    `harness ... | head`) would kill this process instead."""
    if not hasattr(signal, "SIGPIPE") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGPIPE, previous)


def stop(pool: ProcessPoolExecutor, grace: float = 30.0) -> None:
    """Cancel what is queued, SIGTERM the workers (each ends its run as interrupted), and kill
    any still alive after ``grace`` seconds."""
    processes = list(getattr(pool, "_processes", {}).values())  # no public handle before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(grace)
        if process.is_alive():
            process.kill()
            process.join()
    pool.shutdown(wait=True)  # the workers are gone: release the queues' semaphores


_busy = False  # in a worker: whether it is running a job
_stopping = False  # in a worker: SIGTERM arrived


def _worker_init(warm_up: Callable[[], None] | None = None) -> None:
    """In a new worker: SIGTERM ends its run as interrupted, and the kernel sends SIGTERM when
    the parent dies, however it dies (SIGKILL included), so no worker trains on as an orphan.
    Then ``warm_up``; what it fails to do, the job does again and reports."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    with contextlib.suppress(OSError, AttributeError):  # Linux only
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(128 + signal.SIGTERM)
    if warm_up is not None:
        with contextlib.suppress(Exception):
            warm_up()


def _on_sigterm(signum, frame) -> None:
    """In a worker: end the run in hand as a Ctrl-C would (it is recorded as interrupted),
    then exit; an idle worker exits at once."""
    global _stopping
    if _stopping:  # a second SIGTERM while the run is being marked: let it finish
        return
    _stopping = True
    # the run unwinds from wherever it was (a half-drawn figure, say): what its objects'
    # finalisers raise on the way is noise on the user's terminal, not news
    sys.unraisablehook = lambda _: None
    if _busy:
        raise KeyboardInterrupt
    os._exit(128 + signum)


def _run_one(worker: Callable, job):
    global _busy
    _busy = True
    try:
        return worker(job)
    finally:
        _busy = False
        if _stopping:
            os._exit(128 + signal.SIGTERM)


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
