"""Run a suite: every (strategy, setting, seed) run not already finished, recorded in the store.
A run that diverges or raises is recorded as such and the suite goes on.

One worker function, :func:`run_job`, trains and records one run wherever it executes: in
this process (``jobs=1``), in a local worker process (``jobs=N``) or as a Ray task
(``executor="ray"``); :mod:`harness.run.executors` only decides where jobs run.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.core.registry import Registry
from harness.core.spec import RunSpec, Suite
from harness.run.executors import (
    check_executor,
    check_resources,
    default_jobs,
    local_processes,
    ray_tasks,
    release_workers_ahead,
)
from harness.run.grouping import default_max_members, plan_groups, remember, remembered, trial_key
from harness.run.planning import decide, plan
from harness.run.provenance import DEFAULT_THREADS, run_provenance, torch_threads
from harness.run.stacked_training import train_stacked, trial
from harness.run.store import (
    EXECUTION,
    RunLog,
    Store,
    import_mlflow,
    is_store_error,
    storage_error,
)
from harness.run.trainer import resolve_device, train

log = logging.getLogger("harness")


@dataclass(frozen=True)
class RunSettings:
    """How an invocation trains its runs. Only ``threads`` can change a run's numbers (in the
    last bits, on CPU), so it is logged with each run; the rest decides where and how often."""

    device: str = "auto"  # auto (CUDA when present), cpu or cuda[:N]
    data_dir: Path | None = None  # where on-disk datasets live
    checkpoint_every: int = 500  # steps between checkpoints, at least (and at evaluations)
    jobs: int | None = 1  # runs at once in local processes (1: in this process; None: cores)
    threads: int = DEFAULT_THREADS  # torch intra-op threads of each run, wherever it runs
    compile: bool = False  # torch.compile the training forward passes
    executor: str = "local"  # local (jobs processes) or ray (one task per run)
    address: str | None = None  # the Ray cluster (None: the initialised one, else a new one)
    gpus_per_run: float = 0.0  # GPUs per Ray task
    cpus_per_run: float = 1.0  # CPUs per Ray task
    rerun: frozenset[str] = frozenset()  # strategies whose finished runs train again
    stack: str | None = None  # on | off | None: each run's train.stack (auto by default)
    max_members: int | None = None  # runs per stacked group (None: by device, grouping)


@dataclass
class Outcome:
    spec: RunSpec
    status: str  # finished | diverged | failed | skipped | held (a live process trains it)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    execution: str = "per-run"  # or stacked:M, trained with M-1 others as one model


@dataclass(frozen=True)
class Job:
    """Everything one run (or one group of runs trained stacked) needs, picklable: it travels
    to worker processes and Ray tasks."""

    tracking_uri: str
    parent_id: str
    specs: tuple[RunSpec, ...]
    settings: RunSettings = RunSettings()


class Progress:
    """Callbacks the CLI implements to show progress; all optional."""

    def starting(self, suite: Suite, device: str, uri: str) -> None:
        """The suite is valid and the store open; nothing is written yet."""

    def run_started(self, spec: RunSpec) -> Callable[[int, dict], None] | None: ...

    def run_ended(self, outcome: Outcome) -> None: ...

    def runs_queued(self, specs: list[RunSpec], workers: str) -> None:
        """Runs handed to an executor all at once (``workers``: e.g. "2 at a time"); they
        report no steps, only their end."""

    def planned(self, plan: str) -> None:
        """One line before training: how many runs train and why (planning.plan)."""


def run_suite(
    suite: Suite,
    registry: Registry,
    store: Store,
    settings: RunSettings = RunSettings(),
    progress: Progress | None = None,
) -> list[Outcome]:
    """Train every run of ``suite`` not already completed in the store, and the runs of the
    strategies in ``settings.rerun`` anyway (a new run beside the finished one); returns each
    run's outcome, in the suite's order.

    ``executor="local"`` trains ``jobs`` runs at a time (``jobs=1``: in this process, with
    per-step progress; more: separate processes sharing the store; None: one per usable core,
    capped by the runs to train, one on a GPU). ``executor="ray"`` makes each run a Ray task.
    Each run uses ``threads`` torch threads wherever it runs (a setting, not a share of the
    cores), so ``jobs`` and the executor do not change its numbers.
    """
    check_executor(settings.executor)
    check_resources(settings.jobs, settings.threads, settings.executor)
    progress = progress or Progress()
    store.check_writable()
    logged, completed = read_logged(store, suite)
    trained = [s for s in suite.runs if decide(s, completed, settings.rerun) == "train"]
    if settings.jobs is None:
        settings = replace(settings, jobs=default_jobs(len(trained), settings.device))
    line = plan(suite.runs, trained, logged, set(settings.rerun))
    if trained and settings.executor == "local":
        line += f"; {settings.jobs} at a time"
    batches = groups(trained, registry, settings)
    stackable = [job for job in batches if len(job) > 1]
    if stackable:
        runs = sum(len(job) for job in stackable)
        how = "stacked" if settings.stack == "on" else "stacked where a trial measures it faster"
        line += f"; {runs} runs in {len(stackable)} groups {how}"
    progress.planned(line)
    outcomes: dict[str, Outcome] = {}
    for spec in suite.runs:
        if decide(spec, completed, settings.rerun) == "skip":
            outcomes[spec.run_key] = Outcome(spec, "skipped", dict(completed[spec.run_key].metrics))
            progress.run_ended(outcomes[spec.run_key])
    if trained:  # an invocation that trains nothing leaves no parent run behind
        train_all(suite, batches, registry, store, settings, progress, outcomes)
    return [outcomes[spec.run_key] for spec in suite.runs]


def train_all(suite, batches, registry, store, settings, progress, outcomes) -> None:
    """Open the invocation's parent run, train ``batches`` (runs alone and stacked groups:
    :func:`groups`) into ``outcomes`` as the runs end, and close the parent with how it went;
    a store that refuses a write is one line."""
    try:
        parent_id = store.start_suite(suite)
    except Exception as exc:
        store.end_suite(None, "failed")
        raise storage_error(exc, store.uri) from None
    jobs = [Job(store.uri, parent_id, specs, settings) for specs in batches]
    status = "finished"
    try:
        with contextlib.closing(execute(jobs, store, registry, settings, progress)) as results:
            for outcome in results:
                Interrupts.check()
                outcomes[outcome.spec.run_key] = outcome
                progress.run_ended(outcome)
        Interrupts.check()
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception as exc:
        if not is_store_error(exc):
            raise
        status = "failed"  # the store refused a write: stop, in one line
        raise storage_error(exc, store.uri) from None
    finally:
        store.end_suite(parent_id, status)


def read_logged(store: Store, suite: Suite) -> tuple[list, dict]:
    """The suite's logged runs and the completed ones by run key; closes dead invocations'
    parent runs and sweeps away what dead processes left behind. A store that refuses is one
    line."""
    try:
        experiment_id = store.experiment_id(suite.config.name)
        store.close_dead_invocations(experiment_id)
        logged = store.child_runs(experiment_id)
        completed, _ = store.existing_runs(logged)
        store.sweep(completed)
    except Exception as exc:
        raise storage_error(exc, store.uri) from None
    return logged, completed


def groups(specs: list[RunSpec], registry: Registry, settings: RunSettings):
    """The jobs ``specs`` train as: stacked groups and single runs (:mod:`harness.run.grouping`)."""
    max_members = settings.max_members or default_max_members(settings.device)
    workers = 1 if settings.executor == "ray" else settings.jobs or 1
    return plan_groups(
        specs,
        registry,
        stack=settings.stack,
        max_members=max_members,
        workers=workers,
        compile=settings.compile,
    )


def execute(
    jobs: list[Job], store: Store, registry: Registry, settings: RunSettings, progress: Progress
) -> Iterator[Outcome]:
    """Each run's outcome as its job completes: in this process one after another
    (``jobs=1``, with per-step progress), else through an executor (progress at each job's
    end only)."""
    if settings.executor == "local" and settings.jobs == 1:
        release_workers_ahead()
        for job in jobs:
            yield from run_job(job, store, registry, progress)
        return
    if not jobs:
        return
    if settings.executor == "ray":
        results = ray_tasks(
            run_job, jobs, settings.address, settings.cpus_per_run, settings.gpus_per_run
        )
    else:
        results = local_processes(run_job, jobs, settings.jobs)
    with contextlib.closing(results):
        workers = "on Ray" if settings.executor == "ray" else f"{settings.jobs} at a time"
        progress.runs_queued([spec for job in jobs for spec in job.specs], workers)
        for job, result in results:
            try:
                yield from result()
            except Exception as exc:
                if is_store_error(exc):  # the store refused the worker a write: stop the suite
                    raise
                # the worker died before it could record its runs
                error = f"{type(exc).__name__}: {exc}"
                yield from (Outcome(spec, "failed", error=error) for spec in job.specs)


def warm_up() -> None:
    """In a worker started ahead (:func:`~harness.run.executors.workers_ahead`): import what
    every job needs (torch and the trainer with this module, MLflow's store, the plugins,
    and what torch imports when a process builds its first optimiser: 1.6 s) while the
    suite's own process still opens the store."""
    import torch

    import_mlflow()
    Registry()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def run_job(
    job: Job,
    store: Store | None = None,
    registry: Registry | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Train a job's runs and record them in the store: the worker function every executor
    runs. In a worker it opens its own store connection and registry.

    Each run key is claimed first (:meth:`Store.claim_run`, held until the run is recorded):
    a run a live process holds is left to it (outcome ``held``), and the store is read again
    under the claim, so a run completed meanwhile is skipped and an unfinished one resumed.
    The runs left train as one stacked model when there are several and stacking pays
    (:func:`stacking_pays`), else one after another."""
    store = store or Store(job.tracking_uri)
    registry = registry or Registry(job.specs[0].plugins)
    progress = progress or Progress()
    outcomes: dict[str, Outcome] = {}
    with contextlib.ExitStack() as claims:
        todo = []
        for spec in job.specs:
            held = store.claim_run(spec.run_key)
            if held is None:
                error = f"held by {store.run_holder(spec.run_key)}"
                outcomes[spec.run_key] = Outcome(spec, "held", error=error)
                continue
            claims.enter_context(held)
            logged = store.child_runs(store.experiment_of(job.parent_id), spec.run_key)
            completed, resumable = store.existing_runs(logged)
            if decide(spec, completed, job.settings.rerun) == "skip":
                metrics = dict(completed[spec.run_key].metrics)
                outcomes[spec.run_key] = Outcome(spec, "skipped", metrics)
            else:
                todo.append((spec, completed.get(spec.run_key), resumable.get(spec.run_key)))
        with torch_threads(job.settings.threads):
            specs = [spec for spec, _, _ in todo]
            if len(todo) > 1 and stacking_pays(specs, registry, job.settings):
                runs = [start_run(store, job, *run) for run in todo]
                outcomes.update(_train_stacked(job.settings, runs, registry, progress))
            else:
                for run in todo:
                    outcome = _train(job.settings, start_run(store, job, *run), registry, progress)
                    outcomes[outcome.spec.run_key] = outcome
    return [outcomes[spec.run_key] for spec in job.specs]


def start_run(
    store: Store, job: Job, spec: RunSpec, completed, resumable
) -> tuple[RunSpec, RunLog]:
    """Open the run's log (resuming an unfinished one); a ``--rerun`` of a finished run
    leaves that one marked as superseded."""
    run = store.start_run(job.parent_id, spec, resume=resumable)
    if completed is not None:
        store.supersede(completed.id, run.run_id)
    return spec, run


def stacking_pays(specs: list[RunSpec], registry: Registry, settings: RunSettings) -> bool:
    """``--stack``: yes. Otherwise (``train.stack: auto``) the remembered verdict of a trial
    for this machine and configuration, measured now if there is none."""
    if settings.stack == "on":
        return True
    key = trial_key(specs, str(resolve_device(settings.device)), settings.threads)
    verdict = remembered(key)
    if verdict is None:
        try:
            verdict = trial(specs, registry, settings.device, settings.data_dir)
        except Exception as exc:  # parts that do not run stacked after all: run by run
            verdict = {"stack": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        remember(key, verdict)
    return bool(verdict.get("stack"))


def _train(settings: RunSettings, started, registry: Registry, progress: Progress) -> Outcome:
    spec, run = started
    try:
        run.log_params(execution_params(spec, registry, settings, "per-run"))
        result = train(
            spec,
            registry=registry,
            device=settings.device,
            data_dir=settings.data_dir,
            sink=run,
            progress=progress.run_started(spec),
            checkpoint_every=settings.checkpoint_every,
            compile=settings.compile,
        )
    except BaseException as exc:  # SystemExit from plugin code too: it fails only its run
        return failed(spec, run, exc)
    run.finish(result.status)
    return Outcome(spec, result.status, result.metrics)


def _train_stacked(settings: RunSettings, started, registry: Registry, progress: Progress):
    """Train the started runs as one stacked model; if that fails (a plugin that does not
    run stacked after all), each run resumes alone from its last checkpoint."""
    specs, runs = [spec for spec, _ in started], [run for _, run in started]
    try:
        execution = f"stacked:{len(specs)}"
        for spec, run in started:
            run.log_params(execution_params(spec, registry, settings, execution))
        results = train_stacked(
            specs,
            runs,
            registry=registry,
            device=settings.device,
            data_dir=settings.data_dir,
            checkpoint_every=settings.checkpoint_every,
            progress=[progress.run_started(spec) for spec in specs],
        )
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and Interrupts.real():
            for run in runs:
                run.finish("interrupted")
            raise
        log.warning(
            "stacked training failed (%s: %s); training each run alone", type(exc).__name__, exc
        )
        return {
            spec.run_key: _train(settings, (spec, run), registry, progress) for spec, run in started
        }
    outcomes = {}
    for spec, run, result in zip(specs, runs, results, strict=True):
        run.finish(result.status)
        outcomes[spec.run_key] = Outcome(spec, result.status, result.metrics, execution=execution)
    return outcomes


def execution_params(spec, registry, settings: RunSettings, execution: str) -> dict[str, str]:
    """The run's provenance and how it executes (``per-run`` or ``stacked:M``)."""
    device = resolve_device(settings.device)
    return run_provenance(spec, registry, device) | {EXECUTION: execution}


def failed(spec: RunSpec, run: RunLog, exc: BaseException) -> Outcome:
    """Record a run that raised as failed (with its traceback); a real Ctrl-C is re-raised
    after marking it interrupted."""
    if isinstance(exc, KeyboardInterrupt) and Interrupts.real():
        run.finish("interrupted")
        raise exc
    run.log_text(traceback.format_exc(), "traceback.txt")
    run.finish("failed")
    return Outcome(spec, "failed", error=f"{type(exc).__name__}: {exc}")


class Interrupts:
    """Tells a real Ctrl-C from a ``KeyboardInterrupt`` that plugin code raised itself. While
    :meth:`watch` is active (``harness run`` in its main process) a SIGINT is counted, and a
    KeyboardInterrupt with none counted fails only its run; elsewhere (library use, worker
    processes) every KeyboardInterrupt counts as Ctrl-C. SIGTERM (a scheduler's time limit)
    is watched too: it is passed on to the worker processes and stops the suite the same way;
    :attr:`terminated` says it came."""

    watching = False
    signals = 0
    terminated = False
    lost = False  # a KeyboardInterrupt that landed in a finalizer, where Python drops it

    @classmethod
    def real(cls) -> bool:
        return not cls.watching or cls.signals > 0

    @classmethod
    def check(cls) -> None:
        """Raise the KeyboardInterrupt a signal meant, if Python dropped it."""
        if cls.lost:
            cls.lost = False
            raise KeyboardInterrupt

    @classmethod
    @contextlib.contextmanager
    def watch(cls):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # SIGINT is counted where it raises KeyboardInterrupt (not where a host set its own
        # handler, or a shell ignores it for a background job: `nohup harness run ... &`);
        # SIGTERM wherever nothing else handles it, backgrounded too
        sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        sigterm = signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)

        def count(signum, frame):
            cls.signals += 1
            if signum == signal.SIGTERM:
                cls.terminated = True
                for child in multiprocessing.active_children():  # workers end their runs
                    child.terminate()
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt

        def unraisable(event):
            if issubclass(event.exc_type, KeyboardInterrupt):
                cls.lost = True  # raised again at the next check(), quietly
            else:
                hook(event)

        hook, sys.unraisablehook = sys.unraisablehook, unraisable
        if sigterm:
            signal.signal(signal.SIGTERM, count)
        if sigint:
            signal.signal(signal.SIGINT, count)
        cls.watching, cls.signals, cls.terminated, cls.lost = sigint or sigterm, 0, False, False
        try:
            yield
        finally:
            cls.watching = False
            if sigint:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            if sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            sys.unraisablehook = hook
