"""Run a suite: every (strategy, seed) run not already finished, tracked in MLflow. A run that
diverges or raises is recorded as such and the suite goes on.

One worker function, :func:`run_job`, trains and records one run wherever it executes: in
this process (``jobs=1``), in a local worker process (``jobs=N``) or as a Ray task
(``executor="ray"``). The executors only decide where jobs run and hand back outcomes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from mlflow.exceptions import MlflowException

from harness.errors import HarnessError
from harness.identity import plan
from harness.provenance import DEFAULT_THREADS, run_provenance, torch_threads
from harness.registry import Registry
from harness.suite import RunSpec, Suite
from harness.tracking import RunTracker, Tracker, storage_error
from harness.trainer import resolve_device, train

EXECUTORS = ("local", "ray")
RAY_MISSING = "--executor ray needs Ray: `uv sync --extra ray` (or `pip install 'harness[ray]'`)"


@dataclass
class Outcome:
    spec: RunSpec
    status: str  # finished | diverged | failed | skipped | held (a live process trains it)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Job:
    """Everything one run needs, picklable: it travels to worker processes and Ray tasks."""

    tracking_uri: str
    parent_id: str
    spec: RunSpec
    device: str = "auto"
    data_dir: Path | None = None
    checkpoint_every: int = 500
    compile: bool = False
    threads: int = DEFAULT_THREADS  # torch intra-op threads of the run, logged
    rerun: bool = False  # train it even when a finished run has its key (--rerun)


class Progress:
    """Callbacks the CLI implements to show progress; all optional."""

    def run_started(self, spec: RunSpec) -> Callable[[int, dict], None] | None: ...

    def run_ended(self, outcome: Outcome) -> None: ...

    def runs_queued(self, specs: list[RunSpec], workers: str) -> None:
        """Runs handed to an executor all at once (``workers``: e.g. "2 at a time"); they
        report no steps, only their end."""

    def planned(self, plan: str) -> None:
        """One line before training: how many runs train and why (harness.identity.plan)."""


def run_job(
    job: Job,
    tracker: Tracker | None = None,
    registry: Registry | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Train one run and record it in the tracking store: the worker function every executor
    runs. In a worker it opens its own tracker connection and registry.

    The run key is claimed first (:meth:`Tracker.claim_run`, held until the run is recorded):
    a run a live process holds is left to it (outcome ``held``), and the store is read again
    under the claim, so a run completed meanwhile is skipped and an unfinished one resumed."""
    tracker = tracker or Tracker(job.tracking_uri)
    key = job.spec.run_key
    held = tracker.claim_run(key)
    if held is None:
        return Outcome(job.spec, "held", error=f"held by {tracker.run_holder(key)}")
    with held:
        experiment_id = tracker.client.get_run(job.parent_id).info.experiment_id
        completed, resumable = tracker.existing_runs(tracker.child_runs(experiment_id, key))
        if key in completed and not job.rerun:
            return Outcome(job.spec, "skipped", dict(completed[key].data.metrics))
        run = tracker.start_run(job.parent_id, job.spec, resume=resumable.get(key))
        if key in completed:  # --rerun: the finished run stays, marked as superseded
            tracker.client.set_tag(completed[key].info.run_id, "superseded_by", run.run_id)
        with torch_threads(job.threads):
            return _train(job, run, registry, progress)


def _train(job: Job, run: RunTracker, registry: Registry | None, progress: Progress | None):
    progress = progress or Progress()
    try:
        registry = registry or Registry(job.spec.plugins)
        run.log_params(run_provenance(job.spec, registry, resolve_device(job.device)))
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
    except BaseException as exc:  # SystemExit from plugin code too: it fails only its run
        if isinstance(exc, KeyboardInterrupt) and Interrupts.real():
            run.finish("interrupted")
            raise
        run.log_text(traceback.format_exc(), "traceback.txt")
        run.finish("failed")
        return Outcome(job.spec, "failed", error=f"{type(exc).__name__}: {exc}")
    run.finish(result.status)
    return Outcome(job.spec, result.status, result.metrics)


class Interrupts:
    """Tells a real Ctrl-C from a ``KeyboardInterrupt`` that plugin code raised itself. While
    :meth:`watch` is active (``harness run`` in its main process) a SIGINT is counted, and a
    KeyboardInterrupt with none counted fails only its run; elsewhere (library use, worker
    processes) every KeyboardInterrupt counts as Ctrl-C."""

    watching = False
    signals = 0

    @classmethod
    def real(cls) -> bool:
        return not cls.watching or cls.signals > 0

    @classmethod
    @contextlib.contextmanager
    def watch(cls):
        default = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        if not default or threading.current_thread() is not threading.main_thread():
            yield
            return

        def count(signum, frame):
            cls.signals += 1
            signal.default_int_handler(signum, frame)

        signal.signal(signal.SIGINT, count)
        cls.watching, cls.signals = True, 0
        try:
            yield
        finally:
            cls.watching = False
            signal.signal(signal.SIGINT, signal.default_int_handler)


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
    rerun: set[str] | frozenset[str] = frozenset(),
    threads: int = DEFAULT_THREADS,
) -> list[Outcome]:
    """Train every run of ``suite`` not already completed in the tracking store, and the runs
    of the strategies in ``rerun`` anyway (a new run beside the finished one).

    ``executor="local"`` trains ``jobs`` runs at a time (``jobs=1``: in this process, with
    per-step progress; more: separate processes sharing the tracking store and splitting the
    cores). ``executor="ray"`` makes each run a Ray task with ``cpus_per_run`` CPUs and
    ``gpus_per_run`` GPUs on the cluster at ``address`` (None: the one already initialised
    in this process, else a new local one); every task logs to the same tracking store.
    Each run uses ``threads`` torch threads wherever it runs (a setting, not a share of the
    cores), so ``jobs`` and the executor do not change its numbers.
    """
    if executor not in EXECUTORS:
        raise HarnessError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise HarnessError(RAY_MISSING) from None
    progress = progress or Progress()
    tracker.check_writable()
    try:
        parent_id = tracker.start_suite(suite)
        logged = tracker.child_runs(tracker.experiment_id(suite.config.name))
        completed, _ = tracker.existing_runs(logged)
        tracker.sweep(set(completed))
    except Exception as exc:
        tracker.end_suite(None, "failed")
        raise storage_error(exc) from None
    trained = [s for s in suite.runs if s.run_key not in completed or s.strategy in rerun]
    progress.planned(plan(suite.runs, trained, logged, set(rerun)))
    outcomes: dict[str, Outcome] = {}
    todo = []
    for spec in suite.runs:
        if spec.run_key in completed and spec.strategy not in rerun:
            outcomes[spec.run_key] = Outcome(
                spec, "skipped", dict(completed[spec.run_key].data.metrics)
            )
            progress.run_ended(outcomes[spec.run_key])
        else:
            todo.append(
                Job(
                    tracker.uri,
                    parent_id,
                    spec,
                    device=str(device),
                    data_dir=data_dir,
                    checkpoint_every=checkpoint_every,
                    compile=compile,
                    rerun=spec.strategy in rerun,
                    threads=threads,
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
                workers = "on Ray" if executor == "ray" else f"{jobs} at a time"
                progress.runs_queued([job.spec for job in todo], workers)
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
    except (OSError, MlflowException) as exc:  # the store refused a write: stop, in one line
        status = "failed"
        raise storage_error(exc) from None
    finally:
        tracker.end_suite(parent_id, status)
    return [outcomes[spec.run_key] for spec in suite.runs]


Results = Iterator[tuple[Job, Callable[[], Outcome]]]


def _local_processes(jobs: list[Job], workers: int) -> Results:
    """Each job in one of ``workers`` spawned processes (each with the job's thread count);
    yields (job, its outcome getter) as they complete."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result


def _ray_tasks(jobs: list[Job], address: str | None, cpus: float, gpus: float) -> Results:
    """Each job a Ray task holding ``cpus`` CPUs and ``gpus`` GPUs (a
    fraction shares one); yields (job, its outcome getter) as they complete. Tasks are not
    retried: a run whose worker died stays resumable and the next invocation continues it."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_job)
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
