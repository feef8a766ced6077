"""The store: the only module that speaks to MLflow. It owns the client, every tag and param
name, and every read and write: a parent run per suite invocation, a child run per (strategy,
setting, seed), the runs ``harness score`` logs, and the queries tables and reports make.

Callers above it see :class:`StoredRun` records, never MLflow's entities. MLflow is imported
lazily (it takes seconds); metrics are buffered and sent in batches at evaluation points,
never one call per value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from harness.core.errors import HarnessError
from harness.core.spec import RunSpec, Suite
from harness.core.version import __version__
from harness.run.locks import Claim, claim, free_stale, holder

log = logging.getLogger("harness")

DEFAULT_DB = Path("results") / "mlflow.db"
COMPLETED = ("finished", "diverged")
RESUMABLE = ("running", "interrupted")
MLFLOW_STATUS = {
    "finished": "FINISHED",
    "diverged": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}
# tags
EXPERIMENT_KIND, RUNS_VIEW = "mlflow.experimentKind", "custom_model_development"  # UI's view
KIND = "harness.kind"  # suite (an invocation's parent run), run (a trained run) or score
PARENT = "mlflow.parentRunId"
INVOCATION, HOST, PID = "harness.invocation", "harness.host", "harness.pid"
# params
VERSION = "harness_version"
PROTOCOL = "eval_protocol"
IDENTITY = "identity."  # identity.KIND.NAME: each part's code (harness.core.identity)
SWEEP = "sweep."  # sweep.PATH: a setting's values
PLUGINS = "plugins"  # the suite-local plugin modules a run imported, as JSON
PROVENANCE = ("torch_version", "device", "torch_threads", "cpu_capability", "python_version")
EXECUTION = "execution"  # per-run, or stacked:M (trained with M-1 others as one model)
PARAM_CHARS = 6000  # MLflow's limit on a param value


@dataclass(frozen=True)
class StoredRun:
    """A run as the store holds it: its harness tags by name, its params and final metrics.
    ``state`` is MLflow's lifecycle status (RUNNING, FINISHED, FAILED, KILLED); ``status``
    the harness's (finished, diverged, failed, running, interrupted)."""

    id: str
    kind: str
    strategy: str
    seed: str
    setting: str  # a sweep's setting id; "" outside one
    status: str
    run_key: str
    state: str
    experiment_id: str
    parent: str | None = None
    resumed_by: str | None = None
    superseded_by: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    start_time: int | None = None  # ms since the epoch
    end_time: int | None = None

    @classmethod
    def of(cls, run) -> StoredRun:
        """The record of an MLflow run entity."""
        tags = run.data.tags
        return cls(
            id=run.info.run_id,
            kind=tags.get(KIND, ""),
            strategy=tags.get("strategy", ""),
            seed=tags.get("seed", ""),
            setting=tags.get("setting", ""),
            status=tags.get("status", "?"),
            run_key=tags.get("run_key", ""),
            state=run.info.status,
            experiment_id=run.info.experiment_id,
            parent=tags.get(PARENT),
            resumed_by=tags.get("resumed_by"),
            superseded_by=tags.get("superseded_by"),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(tags),
            start_time=run.info.start_time,
            end_time=run.info.end_time,
        )


def quiet_mlflow() -> None:
    """MLflow logs its own errors, tracebacks and all, before raising them; the harness reports
    each refusal itself, in one line."""
    logging.getLogger("mlflow").setLevel(logging.CRITICAL)


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


def spec_params(spec: RunSpec) -> dict[str, str]:
    """The params a run of ``spec`` logs: its resolved config flattened (as MLflow keeps it)."""
    return {k: v[:PARAM_CHARS] for k, v in flatten(spec.config).items()}


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def probe_writable(folder: Path, what: str) -> None:
    """Create, write and delete a file in ``folder``: a one-line error naming it when that
    fails (read-only, permissions, full disk), before MLflow retries for minutes."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".probe-")
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise HarnessError(f"{what} {folder}: {exc.strerror}") from None


def check_sqlite_writable(db: Path) -> None:
    """The store's folder, database file, artifact folder (mlruns/) and checkpoints folder
    accept writes."""
    probe_writable(db.parent, "tracking store folder")
    if db.exists():
        try:
            os.close(os.open(db, os.O_RDWR))
        except OSError as exc:
            raise HarnessError(f"tracking database {db}: {exc.strerror}") from None
    probe_writable(db.parent / "mlruns", "artifact folder")
    probe_writable(db.parent / "checkpoints", "checkpoints folder")


def import_mlflow() -> None:
    """Import MLflow's client and SQL store now (seconds): in a worker started ahead."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.tracking  # noqa: F401


def create_sqlite_store(db: Path) -> None:
    """Create a missing SQLite store atomically and race-free: under a lock beside it,
    MLflow's schema migrations run on a temporary file that is renamed into place, so neither a
    kill during them (seconds) nor a second process creating the same store leaves a half-built
    or replaced store. Temporary stores of crashed creations are deleted under the same lock."""
    lock = db.with_name(f".{db.name}.lock")
    if db.exists() and not [p for p in db.parent.glob(f".{db.name}.*") if p != lock]:
        return
    probe_writable(db.parent, "tracking store folder")  # before MLflow's seconds of imports
    from mlflow.tracking import MlflowClient

    quiet_mlflow()
    with claim(lock, wait=True):
        for leftover in db.parent.glob(f".{db.name}.*"):  # their creators died: we hold the lock
            if leftover != lock:
                leftover.unlink(missing_ok=True)
        if db.exists():
            return
        tmp = db.with_name(f".{db.name}.{uuid.uuid4().hex}")  # MLflow caches stores by URI
        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
        tmp.replace(db)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def sqlite_path(uri: str) -> Path:
    """The file of an ``sqlite:///PATH`` URI; ``sqlite://`` (in memory: every result lost
    when the process ends) is refused."""
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        raise HarnessError(
            f"tracking store {uri} lives in memory and is lost when harness exits: give a "
            "file, e.g. sqlite:///results/mlflow.db"
        )
    return Path(path)


def check_sqlite_store(uri: str) -> None:
    """An existing MLflow SQLite store, checked by reading its header and tables (read-only:
    nothing is created or migrated), or a one-line error."""
    import sqlite3

    path = sqlite_path(uri)
    try:
        info = path.stat()
        with open(path, "rb") as file:
            header = file.read(16)
    except FileNotFoundError:
        raise HarnessError(f"no tracking store at {path}: run a suite first") from None
    except OSError as exc:
        raise HarnessError(f"tracking store {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode) or header != b"SQLite format 3\0":
        raise HarnessError(f"tracking store {path} is not an SQLite database")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = {r[0] for r in db.execute("select name from sqlite_master")}
    except sqlite3.Error as exc:
        raise HarnessError(f"tracking store {path} cannot be read: {exc}") from None
    if not {"experiments", "runs", "alembic_version"} <= tables:
        raise HarnessError(f"{path} is an SQLite database but not an MLflow tracking store")


def check_server(uri: str, timeout: float = 5.0) -> None:
    """A tracking server that answers its health check within ``timeout`` seconds (MLflow's
    own client would retry for minutes)."""
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=timeout).raise_for_status()
    except Exception as exc:
        raise HarnessError(f"tracking store {uri} is unreachable: {first_line(exc)}") from None


def check_store_folder(uri: str) -> None:
    """The folder of an SQLite store named explicitly exists: ``harness run`` creates a store,
    never the directories a mistyped path would make."""
    if uri.startswith("sqlite:"):
        folder = sqlite_path(uri).parent
        if not folder.is_dir():
            raise HarnessError(
                f"tracking store folder {folder} does not exist (create it, or fix the path)"
            )


def storage_error(exc: BaseException, uri: str | None = None) -> HarnessError:
    """A tracking store's or checkpoint folder's refusal as one line naming the store and the
    cause (a full disk, a read-only file, a locked database), not a driver's URL."""
    if isinstance(exc, HarnessError):
        return exc
    where = f"tracking store {uri}" if uri else "tracking store"
    if isinstance(exc, OSError) and exc.strerror:
        where = str(exc.filename) if exc.filename else where
        return HarnessError(f"{where}: {exc.strerror}")
    text = str(exc)
    causes = {
        "disk is full": "no space left on device",
        "No space left": "no space left on device",
        "readonly database": "read-only (cannot be written)",
        "database is locked": "locked by another process for too long",
    }
    cause = next((why for clue, why in causes.items() if clue in text), None)
    if cause is None:
        lines = [line for line in text.strip().splitlines() if line and line[0] not in "([ "]
        cause = f"refused a write: {(lines or [type(exc).__name__])[-1][:300]}"
    return HarnessError(f"{where}: {cause}")


def is_store_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the store refusing a write (a file system error or MLflow's own)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, OSError | MlflowException)


class Store:
    """An MLflow tracking store: experiments per suite, runs tagged for tables.

    Invocations and runs are claimed with locks in :attr:`checkpoint_dir` (see
    :mod:`harness.run.locks`): ``<run key>.claim`` while a process trains that run,
    ``<invocation>.invocation`` while an invocation's parent run is open.

    ``Store(uri)`` opens a store to write to: a missing SQLite store is created and the store is
    checked to answer. ``Store.reader(uri)`` opens one only to read it (tables, reports).
    """

    def __init__(self, uri: str | None = None):
        self.uri = uri or default_tracking_uri()
        self.invocation: Claim | None = None
        try:
            if self.uri.startswith("sqlite:"):
                create_sqlite_store(sqlite_path(self.uri))
            from mlflow.tracking import MlflowClient

            quiet_mlflow()
            if self.uri.startswith(("http://", "https://")):
                check_server(self.uri)
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)
        except HarnessError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HarnessError(f"tracking store {self.uri} is unreachable: {first}") from None

    @classmethod
    def reader(cls, uri: str | None = None) -> Store:
        """A store opened only to read (tables, reports): nothing is created, written or
        migrated. A missing, foreign or unreachable store is one :class:`HarnessError`."""
        from mlflow.tracking import MlflowClient

        uri = uri or default_tracking_uri()
        if uri.startswith("sqlite:"):
            check_sqlite_store(uri)
        elif uri.startswith(("http://", "https://")):
            check_server(uri)
        store = cls.__new__(cls)
        store.uri, store.invocation = uri, None
        quiet_mlflow()
        try:
            store.client = MlflowClient(uri)
        except Exception as exc:
            raise HarnessError(f"tracking store {uri} cannot be read: {first_line(exc)}") from None
        return store

    # --- experiments and runs, read ---------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created when missing, and tagged so that MLflow's UI
        opens it on its runs table (MLflow 3 shows an untagged one as a GenAI overview)."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.tags.get(EXPERIMENT_KIND) != RUNS_VIEW:  # made by an older harness
                self.client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, RUNS_VIEW)
            return experiment.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri.removeprefix("sqlite:///"))
            location = (db.parent / "mlruns" / name).resolve().as_uri()
        tags = {EXPERIMENT_KIND: RUNS_VIEW}
        return self.client.create_experiment(name, artifact_location=location, tags=tags)

    def experiment_of(self, run_id: str) -> str:
        """The experiment id of a run."""
        return self.client.get_run(run_id).info.experiment_id

    def runs(self, experiment: str) -> list[StoredRun]:
        """Every trained and scored run of experiment ``name`` (not the invocations' parent
        runs), oldest first; a missing experiment is a one-line error."""
        try:
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                message = f"no experiment {experiment!r} in {self.uri}: run the suite first"
                raise HarnessError(message)
            runs = self.client.search_runs(
                [found.experiment_id],
                filter_string=f"tags.`{KIND}` != 'suite'",  # MLflow has no IN for tags
                max_results=50_000,
                order_by=["attributes.start_time ASC"],
            )
        except HarnessError:
            raise
        except Exception as exc:
            raise HarnessError(
                f"tracking store {self.uri} cannot be read: {first_line(exc)}"
            ) from None
        records = [StoredRun.of(r) for r in runs]
        return [r for r in records if r.kind in ("run", "score")]

    def invocations(self, experiment: str) -> list[StoredRun]:
        """The parent runs of an experiment's invocations, oldest first (start and end times,
        profile, harness version and git commit in their tags)."""
        try:
            found = self.client.get_experiment_by_name(experiment)
            runs = (
                []
                if found is None
                else self.client.search_runs(
                    [found.experiment_id],
                    filter_string=f"tags.`{KIND}` = 'suite'",
                    max_results=50_000,
                    order_by=["attributes.start_time ASC"],
                )
            )
        except Exception as exc:
            raise HarnessError(
                f"tracking store {self.uri} cannot be read: {first_line(exc)}"
            ) from None
        return [StoredRun.of(r) for r in runs]

    def child_runs(self, experiment_id: str, run_key: str | None = None) -> list[StoredRun]:
        """Every trained run of an experiment (or only ``run_key``'s), oldest first."""
        query = f"tags.`{KIND}` = 'run'"
        if run_key is not None:
            query += f" and tags.run_key = '{run_key}'"
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=query,
            max_results=50_000,
            order_by=["attributes.start_time ASC"],
        )
        return [StoredRun.of(r) for r in runs]

    def existing_runs(
        self, runs: list[StoredRun]
    ) -> tuple[dict[str, StoredRun], dict[str, StoredRun]]:
        """``runs`` (from :meth:`child_runs`) by run key: completed ones (re-runs skip them)
        and resumable ones (running when their process died, or interrupted: re-runs continue
        them). The ``status`` tag decides; a run whose process died after setting it but
        before closing the MLflow run is closed here."""
        completed, resumable = {}, {}
        for run in runs:
            status, key = run.status, run.run_key
            if status in COMPLETED or status == "failed":
                if run.state == "RUNNING":
                    self.client.set_terminated(run.id, MLFLOW_STATUS[status])
                if status in COMPLETED:
                    completed[key] = run
            elif status in RESUMABLE:
                resumable[key] = run
        return completed, {k: r for k, r in resumable.items() if k not in completed}

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """Every logged (step, value) of one metric of one run, in logging order."""
        try:
            history = self.client.get_metric_history(run_id, key)
        except Exception as exc:
            raise HarnessError(
                f"tracking store {self.uri} cannot be read: {first_line(exc)}"
            ) from None
        return [(m.step, m.value) for m in history]

    def last_artifact(self, run_id: str, folder: str, suffix: str, dest: Path) -> tuple[Path, int]:
        """The last file (by name) ending in ``suffix`` in a run's artifact ``folder``,
        downloaded under ``dest``, and the step its name carries; raises ``LookupError`` when
        there is none and :class:`HarnessError` when it cannot be fetched."""
        from mlflow.exceptions import MlflowException

        try:
            files = sorted(
                f.path
                for f in self.client.list_artifacts(run_id, folder)
                if f.path.endswith(suffix)
            )
            if not files:
                raise LookupError(f"no {folder}/*{suffix} in run {run_id}")
            with mock.patch.dict(os.environ, {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "0"}):
                into = dest / run_id  # the same file names across runs
                into.mkdir()
                local = self.client.download_artifacts(run_id, files[-1], str(into))
        except (MlflowException, OSError) as exc:
            raise HarnessError(f"run {run_id}: {folder}/: {exc}") from None
        step = int("".join(c for c in Path(files[-1]).stem if c.isdigit()) or -1)
        return Path(local), step

    # --- checkpoints and claims -----------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        """Checkpoints live beside an embedded store, else under results/checkpoints."""
        if self.uri.startswith("sqlite:///"):
            return Path(self.uri.removeprefix("sqlite:///")).parent / "checkpoints"
        return Path("results") / "checkpoints"

    def check_writable(self) -> None:
        """Fail fast, in one line naming the path, when an SQLite store's files refuse writes."""
        if self.uri.startswith("sqlite:///"):
            check_sqlite_writable(Path(self.uri.removeprefix("sqlite:///")))

    def claim_run(self, run_key: str) -> Claim | None:
        """The right to train ``run_key``, held until released; None while a live process
        holds it."""
        return claim(self.checkpoint_dir / f"{run_key}.claim")

    def run_holder(self, run_key: str) -> str:
        return holder(self.checkpoint_dir / f"{run_key}.claim")

    def sweep(self, completed: Iterable[str]) -> None:
        """Delete what dead processes left in :attr:`checkpoint_dir`: lock files, temporary
        checkpoints, checkpoints of completed runs, empty run folders. Runs a live process
        holds are not touched."""
        completed = set(completed)
        folder = self.checkpoint_dir
        if not folder.is_dir():
            return
        free_stale(folder, "*.claim")
        for run_dir in [p for p in folder.iterdir() if p.is_dir()]:
            held = self.claim_run(run_dir.name)
            if held is None:
                continue
            with held:
                for tmp in run_dir.glob("checkpoint.tmp*"):
                    tmp.unlink(missing_ok=True)
                if run_dir.name in completed:
                    (run_dir / "checkpoint.pt").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    run_dir.rmdir()  # only when empty

    # --- invocations and runs, written ---------------------------------------------------

    def close_dead_invocations(self, experiment_id: str) -> None:
        """Close, as KILLED, the parent runs still RUNNING whose invocation's lock is free (its
        process died), and delete dead invocations' lock files; those of live ones are left
        alone. (On a server store the locks are local files: a parent opened on another host
        is never closed here.)"""
        free_stale(self.checkpoint_dir, "*.invocation")
        stale = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{KIND}` = 'suite' and attributes.status = 'RUNNING'",
        )
        local = self.uri.startswith("sqlite:///")
        for run in stale:
            tags = run.data.tags
            if not local and tags.get(HOST, socket.gethostname()) != socket.gethostname():
                continue
            lock = self.checkpoint_dir / f"{tags.get(INVOCATION)}.invocation"
            dead = claim(lock) if INVOCATION in tags else contextlib.nullcontext()
            if dead is not None:
                with dead:
                    self.client.set_terminated(run.info.run_id, "KILLED")

    def start_suite(self, suite: Suite) -> str:
        """Create the parent run, with the suite YAML and resolved config as artifacts.

        The invocation holds a lock (``<id>.invocation``, its id in the parent's
        ``harness.invocation`` tag) from before the parent exists until :meth:`end_suite`, so
        that :meth:`close_dead_invocations` of a later invocation can tell a live one's parent
        from a dead one's.
        """
        experiment_id = self.experiment_id(suite.config.name)
        invocation = uuid.uuid4().hex
        self.invocation = claim(self.checkpoint_dir / f"{invocation}.invocation", wait=True)
        run = self.client.create_run(
            experiment_id,
            run_name=f"{suite.config.name}" + (f"-{suite.profile}" if suite.profile else ""),
            tags={
                KIND: "suite",
                "profile": suite.profile or "default",
                VERSION: __version__,
                "git_commit": git_commit(),
                "suite_path": suite.path,
                INVOCATION: invocation,
                HOST: socket.gethostname(),
                PID: str(os.getpid()),
            },
        )
        run_id = run.info.run_id
        try:
            self.client.log_text(run_id, suite.text, "suite.yaml")
            self.client.log_dict(run_id, [spec.config for spec in suite.runs], "resolved.json")
        except Exception:
            self.end_suite(run_id, "failed")
            raise
        return run_id

    def end_suite(self, run_id: str | None, status: str = "finished") -> None:
        """Close the parent run (when one was created) and release the invocation's lock. When
        the store refuses even that, the next invocation finds the lock free and closes the
        parent as KILLED."""
        try:
            if run_id is not None:
                self.client.set_terminated(run_id, MLFLOW_STATUS[status])
        except Exception:
            pass
        finally:
            if self.invocation is not None:
                self.invocation.release()
                self.invocation = None

    def start_run(self, parent_id: str, spec: RunSpec, resume: StoredRun | None = None) -> RunLog:
        """A new child run, or ``resume`` (an unfinished one) continued from its checkpoint.
        The caller holds the run key's claim (:meth:`claim_run`).

        A crash may fall between any two of these writes: a run is visible as resumable from
        its creation on, and resuming logs whatever params it still lacks."""
        from mlflow.entities import RunTag

        checkpoint = self.checkpoint_dir / spec.run_key / "checkpoint.pt"
        for tmp in checkpoint.parent.glob("checkpoint.tmp*"):  # of a dead writer: we hold the key
            tmp.unlink()
        if resume is not None:
            self.client.update_run(resume.id, status="RUNNING")
            tags = [RunTag("status", "running"), RunTag("resumed_by", parent_id)]
            self.client.log_batch(resume.id, tags=tags)
            return RunLog(self.client, resume.id, spec, checkpoint, logged=resume.params)
        for leftover in checkpoint.parent.glob("checkpoint*"):  # of a run this store lacks
            leftover.unlink()
        run = self.client.create_run(
            self.experiment_of(parent_id),
            run_name=f"{spec.strategy}-{spec.setting + '-' if spec.setting else ''}seed{spec.seed}",
            tags={
                PARENT: parent_id,
                KIND: "run",
                "strategy": spec.strategy,
                "seed": str(spec.seed),
                "run_key": spec.run_key,
                "status": "running",
                "loss": spec.loss.name,
                "constraint": spec.constraint.name,
                **({"setting": spec.setting} if spec.setting else {}),  # values: sweep.* params
            },
        )
        return RunLog(self.client, run.info.run_id, spec, checkpoint)

    def supersede(self, old_id: str, new_id: str) -> None:
        """Mark a finished run as superseded by a rerun of the same key (tables take the
        newest)."""
        self.client.set_tag(old_id, "superseded_by", new_id)

    def log_score(
        self,
        experiment: str,
        name: str,
        run_key: str,
        params: dict[str, str],
        values: dict[str, float],
    ) -> str:
        """Record scores of samples made elsewhere as a finished run that tables show as
        strategy ``name``; returns its run id."""
        from mlflow.entities import Metric, Param

        run = self.client.create_run(
            self.experiment_id(experiment),
            run_name=name,
            tags={
                KIND: "score",
                "strategy": name,
                "seed": "0",
                "status": "finished",
                "run_key": run_key,
            },
        )
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in values.items()],
            params=[Param(k, str(v)[:PARAM_CHARS]) for k, v in params.items()],
        )
        self.client.set_terminated(run_id, "FINISHED")
        return run_id


class RunLog:
    """One child run; a :class:`harness.run.trainer.MetricsSink`.

    Metrics are buffered and sent only when a checkpoint is written (and at the end), right
    after it: a run killed in between resumes from that checkpoint with the unsent buffer, and
    (key, step) pairs already in the store are never sent twice — no duplicates, no gaps.
    """

    def __init__(
        self, client, run_id: str, spec: RunSpec, checkpoint: Path, logged: dict | None = None
    ):
        """``logged``: the params of a resumed run (None: a new run); those missing are sent."""
        from mlflow.entities import Param

        self.client, self.run_id, self.checkpoint = client, run_id, checkpoint
        self._buffer: list[tuple[str, float, int, int]] = []
        self._sent: set[tuple[str, int]] | None = None if logged is None else self._logged_steps()
        params = [Param(k, v) for k, v in spec_params(spec).items()]
        params.append(Param(VERSION, __version__))
        params = [p for p in params if p.key not in (logged or {})]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])

    def log_params(self, values: dict[str, str]) -> None:
        """Params of this session (provenance). A param cannot change, so a resumed run whose
        value differs keeps the first and gets the new one as tag ``resumed.<name>``."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, v) for k, v in values.items() if k not in logged]
        if new:
            self.client.log_batch(self.run_id, params=new)
        for k, v in values.items():
            if k in logged and logged[k] != v:
                self.client.set_tag(self.run_id, f"resumed.{k}", v)

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
        try:
            torch.save({**state, "pending": self._buffer}, tmp)
            tmp.replace(self.checkpoint)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.flush()

    def load_checkpoint(self) -> dict | None:
        """The checkpoint's state, loaded as data only (``weights_only``: tensors, numbers,
        strings and containers of them; a pickle that would run code is refused). A file that
        is no checkpoint of this harness is deleted, with one line, and the run starts over."""
        import torch

        if not self.checkpoint.exists():
            return None
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            pending = state.pop("pending")
        except Exception as exc:  # a foreign, planted, older or torn file
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            log.warning(
                "checkpoint %s refused (%s): not a checkpoint of this harness; "
                "the run trains again from step 0",
                self.checkpoint,
                reason,
            )
            self.checkpoint.unlink(missing_ok=True)
            return None
        self._buffer = pending
        self.flush()
        return state

    def log_files(self, files: dict[str, bytes]) -> None:
        """Upload files rendered at an evaluation (``samples/step_N.png``, value surfaces), by
        their path in the run's artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                path = Path(tmp) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                self.client.log_artifact(self.run_id, str(path), str(Path(name).parent))

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def finish(self, status: str) -> None:
        """Send what is left and close the run; a completed run's checkpoint is deleted."""
        self.flush()
        self.client.set_tag(self.run_id, "status", status)  # what resumption decides by
        self.client.set_terminated(self.run_id, MLFLOW_STATUS[status])
        if status in COMPLETED:
            self.checkpoint.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.checkpoint.parent.rmdir()
