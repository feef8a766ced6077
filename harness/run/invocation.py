"""What ``harness run SUITE`` does, as one call: validate the suite and the options, pick the
strategies, build every part once on the CPU, open the store, then train (:func:`invoke`).
Everything that can fail on bad input fails before anything is written; the worker processes
start (and import) while the store opens."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from harness.core.errors import HarnessError
from harness.run.executors import check_resources, default_jobs, workers_ahead
from harness.run.loading import MAX_RUNS, load_suite
from harness.run.planning import select
from harness.run.preflight import dry_build
from harness.run.runner import Outcome, Progress, RunSettings, run_suite, warm_up
from harness.run.store import Store, check_store_folder
from harness.run.trainer import check_device


@dataclass(frozen=True)
class RunRequest:
    """A ``harness run`` as asked for: the suite, which of its runs, and how to train them."""

    suite: Path
    profile: str | None = None
    seeds: list[int] | None = None
    precision: str | None = None  # overrides the suite's train.precision
    max_runs: int | None = MAX_RUNS
    only: str | None = None  # "A,B": train only these strategies
    rerun: str | None = None  # "A,B" or "all": retrain their finished runs
    tracking_uri: str | None = None
    settings: RunSettings = RunSettings()


def invoke(request: RunRequest, progress: Progress) -> list[Outcome]:
    """Validate ``request`` (one :class:`HarnessError` naming the file and field, nothing
    written), announce it through ``progress.starting``, and train what it asks for."""
    settings = request.settings
    if settings.executor == "local" and (settings.address is not None or settings.gpus_per_run):
        raise HarnessError("--address and --gpus-per-run need --executor ray")
    check_resources(settings.jobs, settings.threads, settings.executor)
    suite, registry = load_suite(
        request.suite,
        profile=request.profile,
        seeds=request.seeds,
        precision=request.precision,
        max_runs=request.max_runs,
        data_dir=settings.data_dir,
    )
    suite, rerun = select(suite, request.only, request.rerun)
    device = check_device(settings.device)
    dry_build(suite, registry)  # parts that cannot take each other: before any write
    if request.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):  # named, not the default
        check_store_folder(request.tracking_uri or os.environ["MLFLOW_TRACKING_URI"])
    ray = settings.executor == "ray"  # each Ray worker resolves "auto" on its own machine
    settings = replace(
        settings, rerun=frozenset(rerun), device=settings.device if ray else str(device)
    )
    workers = 1 if ray else settings.jobs or default_jobs(len(suite.runs), settings.device)
    with workers_ahead(workers, warm_up) if workers > 1 else contextlib.nullcontext():
        store = Store(request.tracking_uri)
        store.check_writable()  # before anything is printed or trained
        progress.starting(suite, str(device), store.uri)
        return run_suite(suite, registry, store, settings, progress)
