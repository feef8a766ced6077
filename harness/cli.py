"""The ``harness`` command: it parses, prints and exits; the work lives in the library."""

from __future__ import annotations

import contextlib
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.errors import HarnessError, printable

app = typer.Typer(
    help="Benchmark Lipschitz strategies for GAN critics: run suites, list plugins, compare.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ProfileOpt = Annotated[
    str | None, typer.Option("--profile", "-p", help="Profile from the suite's profiles: block.")
]
MaxRunsOpt = Annotated[
    int, typer.Option(min=1, help="Refuse a suite whose sweeps expand to more runs than this.")
]
ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        help="Only runs of this evaluation protocol (an id or its prefix, as in the footnote; "
        "needed when runs of several are stored)."
    ),
]
MAX_RUNS = 500  # harness.suite.MAX_RUNS, not imported here: the CLI starts fast


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"


class Executor(StrEnum):
    local = "local"
    ray = "ray"


def fail(exc: Exception, code: int = 2):
    err.print(f"[red]error:[/red] {escape(printable(str(exc)))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise HarnessError(f"--seeds: expected comma-separated integers, got {text!r}") from None


@app.command()
def run(
    suite: Annotated[Path, typer.Argument(help="Suite YAML file, e.g. suites/mnist_modes.yaml.")],
    profile: ProfileOpt = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present), cpu or cuda[:N].")
    ] = "auto",
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else results/mlflow.db)."
        ),
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="Override the suite's seeds: 0,1,2.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where on-disk datasets live (mnist source torchvision).")
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Checkpoint at least every N steps (and at evaluations).")
    ] = 500,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Runs trained at once, in processes.")
    ] = 1,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            help="Torch CPU threads per run, whatever --jobs is (logged; the count changes CPU "
            "numerics in the last bits).",
        ),
    ] = 1,
    precision: Annotated[
        Precision | None,
        typer.Option(
            help="bf16 autocasts forward passes; part of the run key (default: the suite's "
            "train.precision, fp32)."
        ),
    ] = None,
    compile_models: Annotated[
        bool,
        typer.Option("--compile", help="torch.compile generator and critic (eager if it fails)."),
    ] = False,
    executor: Annotated[
        Executor, typer.Option(help="local: --jobs processes here; ray: one Ray task per run.")
    ] = Executor.local,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster: auto or ray://HOST:10001 (default: start a local one)."),
    ] = None,
    gpus_per_run: Annotated[
        float, typer.Option(min=0, help="GPUs per Ray task: 0.25 puts four runs on a GPU.")
    ] = 0.0,
    rerun: Annotated[
        str | None,
        typer.Option(help="Retrain these strategies' finished runs anyway: A,B or all."),
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(
            help="Train only these strategies: A,B (the others' runs are left as they are)."
        ),
    ] = None,
    max_runs: MaxRunsOpt = MAX_RUNS,
):
    """Train every (strategy, setting, seed) run of SUITE, log to MLflow, print a table."""
    from harness.identity import strategy_set
    from harness.runner import Interrupts, run_suite
    from harness.suite import load_suite
    from harness.trainer import resolve_device

    try:
        if executor is Executor.local and (address is not None or gpus_per_run):
            raise HarnessError("--address and --gpus-per-run need --executor ray")
        loaded, registry = load_suite(
            suite,
            profile=profile,
            seeds=parse_seeds(seeds),
            precision=precision and precision.value,
            max_runs=max_runs,
            data_dir=data_dir,
        )
        rerun_strategies = strategy_set(rerun, loaded.config.strategies, "--rerun")
        if only:
            kept = strategy_set(only, loaded.config.strategies, "--only")
            loaded = loaded.model_copy(
                update={"runs": [r for r in loaded.runs if r.strategy in kept]}
            )
        resolved = resolve_device(device)
        from harness.preflight import dry_build

        dry_build(loaded, registry)  # parts that cannot take each other: before any write
        from harness.tracking import Tracker

        tracker = Tracker(tracking_uri)
        tracker.check_writable()  # before anything is printed or trained
    except (HarnessError, RuntimeError) as exc:
        fail(exc)
    runs = loaded.runs
    from harness.report import shown_uri

    console.print(
        f"[bold]{loaded.config.name}[/bold] ({profile or 'default'} profile): {len(runs)} runs "
        f"on {resolved}, tracking at {shown_uri(tracker.uri)}"
    )
    with _reporter() as reporter, Interrupts.watch():
        try:
            outcomes = run_suite(
                loaded,
                registry,
                tracker,
                device=device if executor is Executor.ray else str(resolved),  # per Ray worker
                data_dir=data_dir,
                progress=reporter,
                checkpoint_every=checkpoint_every,
                jobs=jobs,
                compile=compile_models,
                executor=executor.value,
                address=address,
                gpus_per_run=gpus_per_run,
                rerun=rerun_strategies,
                threads=threads,
            )
        except KeyboardInterrupt:
            err.print("interrupted: the running run is marked interrupted")
            raise typer.Exit(130) from None
        except HarnessError as exc:
            fail(exc)
    _print_summary(outcomes)
    for o in outcomes:
        if o.status == "held":  # another live invocation trains it; it is not redone here
            err.print(f"{escape(o.spec.strategy)} seed {o.spec.seed}: {o.error}, skipped")
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        at = f" @ {o.spec.setting}" if o.spec.setting else ""
        err.print(f"[red]failed:[/red] {o.spec.strategy}{at} seed {o.spec.seed}: {o.error}")
    if failed:
        raise typer.Exit(1)


@contextlib.contextmanager
def _reporter():
    """Rich bars on a terminal; plain lines without one (a log file, CI, nohup, a cluster job),
    where bars would not draw. ``TTY_COMPATIBLE=1`` or ``0`` forces one or the other."""
    if not console.is_terminal:
        yield _LineReporter(console)
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bars:
        yield _ProgressReporter(bars)


PROGRESS_SECONDS = 30.0  # without a terminal: a run's step lines at most this often


def _run_name(spec) -> str:
    return f"{spec.strategy}{f' @ {spec.setting}' if spec.setting else ''} seed {spec.seed}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


class _LineReporter:
    """Progress as timestamped lines: one when a run starts, one when it ends (status, time,
    key metrics), and one at logging points at most every ``PROGRESS_SECONDS`` between."""

    def __init__(self, out: Console):
        self.out = out
        self.started: dict[str, float] = {}

    def _line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.out.print(f"{stamp} {escape(text)}", highlight=False, soft_wrap=True)

    def planned(self, plan: str) -> None:
        self._line(plan)

    def run_started(self, spec):
        name, steps = _run_name(spec), spec.train.steps
        start = last = self.started[spec.run_key] = time.monotonic()
        self._line(f"start {name}: {steps} steps")

        def update(step: int, values: dict[str, float]) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < PROGRESS_SECONDS:
                return
            last = now
            self._line(
                f"{name}: step {step}/{steps}, critic {values['loss_critic']:+.3f} "
                f"gen {values['loss_generator']:+.3f}, {_duration(now - start)}"
            )

        return update

    def runs_queued(self, specs, workers: str) -> None:
        self._line(f"queued {len(specs)} runs, {workers}; each reports when it ends")

    def run_ended(self, outcome) -> None:
        name = _run_name(outcome.spec)
        if outcome.status in ("skipped", "held"):
            why = "already finished" if outcome.status == "skipped" else outcome.error
            self._line(f"skip {name}: {why}")
            return
        start = self.started.get(outcome.spec.run_key)
        if start is not None:
            took = f" in {_duration(time.monotonic() - start)}"
        elif (trained := outcome.metrics.get("train_seconds")) is not None:
            took = f" after {_duration(trained)} of training"  # not its time in the queue
        else:
            took = ""
        if outcome.status == "failed":
            detail = outcome.error or ""
        else:
            from harness.summary import SHOWN

            shown = [k for k in SHOWN if k in outcome.metrics][:5]
            detail = ", ".join(f"{k} {outcome.metrics[k]:.4g}" for k in shown)
        self._line(f"end {name}: {outcome.status}{took}" + (f"; {detail}" if detail else ""))


class _ProgressReporter:
    """A bar per run; with --jobs the bars move when runs end (workers report no steps)."""

    def __init__(self, bars: Progress):
        self.bars = bars
        self.tasks: dict[str, int] = {}

    def planned(self, plan: str) -> None:
        self.bars.console.print(escape(plan), highlight=False, soft_wrap=True)

    def run_started(self, spec):
        task = self.bars.add_task(
            f"{spec.strategy}{f' @ {spec.setting}' if spec.setting else ''} seed {spec.seed}",
            total=spec.train.steps,
            info="",
        )
        self.tasks[spec.run_key] = task

        def update(step: int, values: dict[str, float]) -> None:
            info = f"critic {values['loss_critic']:+.3f} gen {values['loss_generator']:+.3f}"
            self.bars.update(task, completed=step, info=info)

        return update

    def runs_queued(self, specs, workers: str) -> None:
        for spec in specs:  # bars wait at 0 until their run ends
            self.run_started(spec)

    def run_ended(self, outcome) -> None:
        spec = outcome.spec
        if spec.run_key not in self.tasks:
            self.run_started(spec)
        info = {"skipped": "already finished: skipped", "held": f"{outcome.error}: skipped"}.get(
            outcome.status, outcome.status
        )
        done = spec.train.steps if outcome.status in ("skipped", "finished") else None
        self.bars.update(self.tasks[spec.run_key], completed=done, info=info)


def _print_summary(outcomes) -> None:
    from harness.summary import outcomes_frame, summary_columns, summary_table

    frame = outcomes_frame(outcomes)
    table = summary_table(frame, summary_columns(frame))
    out = Table(title="mean ± std over seeds")
    out.add_column("strategy")
    for column in table.columns:
        out.add_column(str(column), justify="right")
    for name, row in table.iterrows():
        out.add_row(str(name), *(str(v) for v in row))
    console.print(out)


@app.command()
def validate(
    suite: Annotated[Path, typer.Argument(help="Suite YAML file.")],
    profile: ProfileOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where on-disk datasets live: their files are checked.")
    ] = None,
    max_runs: MaxRunsOpt = MAX_RUNS,
):
    """Check SUITE without training: every plugin, parameter and type, the dataset's files,
    and what it imports."""
    from harness.suite import load_suite

    try:
        loaded, _ = load_suite(suite, profile=profile, data_dir=data_dir, max_runs=max_runs)
    except HarnessError as exc:
        fail(exc)
    config = loaded.config
    console.print(
        f"{suite}: ok — {len(config.strategies)} strategies"
        + (" × settings" if any(r.setting for r in loaded.runs) else "")
        + f" × {len(config.seeds)} seeds "
        f"= {len(loaded.runs)} runs of {config.train.steps} steps"
    )
    seen = set()
    for spec in loaded.runs:
        if spec.strategy in seen:
            continue
        seen.add(spec.strategy)
        opt = spec.optimizer
        mine = [r.setting for r in loaded.runs if r.strategy == spec.strategy]
        settings = list(dict.fromkeys(mine))
        shown = ", ".join(map(str, settings[:8])) + (", …" if len(settings) > 8 else "")
        swept = f" in {settings[0]}; {len(settings)} settings: {shown}" if spec.setting else ""
        console.print(
            f"  {spec.strategy}: loss {spec.loss.name}{_params(spec.loss.params)}, "
            f"constraint {spec.constraint.name}{_params(spec.constraint.params)}, "
            f"{opt.name} lr {opt.lr:g}" + (f" betas {opt.betas}" if opt.betas else "") + swept,
            highlight=False,
            soft_wrap=True,
        )
    modules = [f"{m} ({getattr(sys.modules[m], '__file__', '?')})" for m in config.plugins]
    imports = ", ".join(modules) or "no suite-local plugin modules"
    console.print(f"  imports: {imports}", highlight=False, soft_wrap=True)


def _params(params: dict) -> str:
    """``(k=v, ...)`` as rich text: user values are escaped, never markup or control codes."""
    text = f"({', '.join(f'{k}={v}' for k, v in params.items())})" if params else ""
    return escape(printable(text))


@app.command()
def table(
    suite: Annotated[
        Path | None, typer.Argument(help="Suite YAML whose experiment to tabulate.")
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment name instead.")] = None,
    runs: Annotated[str | None, typer.Option(help="Only runs of this parent run id.")] = None,
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metric names.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="markdown, csv, latex or html.")
    ] = "markdown",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    compare: Annotated[
        tuple[str, str] | None, typer.Option(help="Compare two strategies: --compare A B.")
    ] = None,
    by: Annotated[
        str | None, typer.Option(help="setting: a row per strategy × sweep setting.")
    ] = None,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness",
            help="Per strategy over a sweep's settings: best, median, IQR, share that train, "
            "expected best of k random settings.",
        ),
    ] = False,
    metric: Annotated[
        str | None, typer.Option(help="The metric of --robustness (default: the first shown).")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow URI.")] = None,
    all_versions: Annotated[
        bool,
        typer.Option(
            "--all-versions",
            help="Include runs of older plugin code or harness versions (default: current only).",
        ),
    ] = False,
    protocol: ProtocolOpt = None,
):
    """Compare strategies across seeds: mean ± 95 % CI, best marked, ranks, protocol footnote."""
    from harness import tables
    from harness.identity import current_checker
    from harness.registry import Registry
    from harness.summary import directions
    from harness.tracking import default_tracking_uri

    try:
        experiment = tables.experiment_name(suite, experiment)
        current = None if all_versions else current_checker()
        uri = tracking_uri or default_tracking_uri()
        frame = tables.load_runs(uri, experiment, runs, current=current, protocol=protocol)
        known = directions(Registry())
        chosen = metrics.split(",") if metrics else tables.default_metrics(frame, known)
        if by not in (None, "setting"):
            raise HarnessError(f"--by: expected 'setting', got {by!r}")
        if robustness:
            from harness import robustness as views

            name = metric or next((m for m in chosen if m in known), "")
            result = views.robustness(frame, name, known, views.modes_of(frame))
            text = views.render(result, name, known[name], fmt)
        elif compare:
            text = tables.compare(frame, *compare, chosen, known).to_string() + "\n"
        else:
            if by == "setting":
                from harness.robustness import by_setting

                result = by_setting(frame, chosen, known)
            else:
                result = tables.aggregate(frame, chosen, known)
            text = tables.render(result, chosen, known, fmt, tables.footnote(frame, chosen))
    except HarnessError as exc:
        fail(exc)
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        console.print(f"wrote {out}")


@app.command()
def score(
    samples: Annotated[
        Path, typer.Argument(help="An .npy, .npz or .pt array, or a folder of PNG images.")
    ],
    dataset: Annotated[
        str, typer.Option(help="What the samples imitate: mnist, stacked_mnist, ring8, grid25.")
    ],
    metrics: Annotated[
        str | None,
        typer.Option(help="Comma-separated metric plugins (default: mode_coverage,fid,transport)."),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log", help="Also record the scores as an MLflow run.")
    ] = False,
    name: Annotated[
        str | None, typer.Option(help="Its name in tables: score:NAME (default: the file's stem).")
    ] = None,
    suite: Annotated[
        Path | None, typer.Option(help="With --log: into this suite's experiment.")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="With --log: into this experiment (default: score).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="A dataset parameter, repeatable: --param source=torchvision."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda[:N] or auto.")] = "cpu",
    data_dir: Annotated[
        Path | None, typer.Option(help="Where on-disk datasets live (mnist source torchvision).")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow URI.")] = None,
):
    """Score SAMPLES made elsewhere with the metrics a run logs (images: uint8 0–255, or floats
    in [0, 1] or [−1, 1]; toys: (N, 2) points)."""
    from harness import scoring
    from harness.tables import experiment_name

    try:
        if (suite or experiment) and not log:
            raise HarnessError("--suite and --experiment say where --log records: add --log")
        target = experiment_name(suite, experiment) if (suite or experiment) else "score"
        values = scoring.score(
            samples,
            dataset,
            metrics=metrics.split(",") if metrics else None,
            dataset_params=scoring.parse_params(param or []),
            device=device,
            data_dir=data_dir,
            log=log,
            name=name,
            experiment=target,
            tracking_uri=tracking_uri,
        )
    except HarnessError as exc:
        fail(exc)
    out = Table(title=f"{escape(str(samples))} as {escape(dataset)}")
    out.add_column("metric")
    out.add_column("value", justify="right")
    for key, value in values.items():
        out.add_row(escape(key), f"{value:.6g}")
    console.print(out)
    if "fid_mnist" in values:
        console.print(
            f"fid_mnist {values['fid_mnist']:.4g}; two real sets of "
            f"{values['fid_mnist_samples']:.0f} digits reach {values['fid_mnist_floor']:.4g}"
        )
    if log:
        label = scoring.run_name(name, str(samples))
        console.print(f"logged as strategy {escape(label)} in experiment {escape(target)}")
        note = scoring.protocol_note(tracking_uri, target, label)
        if note:
            console.print(escape(note), highlight=False, soft_wrap=True)


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Directory for report.html, figures and tables.")],
    suite: Annotated[
        Path | None, typer.Argument(help="Suite YAML whose experiment to report.")
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment name instead.")] = None,
    runs: Annotated[str | None, typer.Option(help="Only runs of this parent run id.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow URI.")] = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Include runs of older code, as in table.")
    ] = False,
    protocol: ProtocolOpt = None,
):
    """Write a self-contained HTML report: tables, curves, coverage, gradient norms, samples."""
    from harness.report import write_report
    from harness.tables import experiment_name
    from harness.tracking import default_tracking_uri

    try:
        name = experiment_name(suite, experiment)
        uri = tracking_uri or default_tracking_uri()
        page = write_report(uri, name, out, runs, all_versions, protocol=protocol)
    except HarnessError as exc:
        fail(exc)
    console.print(f"wrote {page} (figures as PNG, table.md, table.csv, runs.csv beside it)")


@app.command("list")
def list_parts(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Show this part whole: description, parameters with types and bounds, source."
        ),
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only this kind: loss, constraint, architecture, ...")
    ] = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="Whole descriptions, wrapped, not first sentences cut short."),
    ] = False,
):
    """Show every registered part: kind, name, parameters with defaults, source package."""
    from harness.registry import Registry

    try:
        registry = Registry()
        parts = registry.parts  # registering every part: a failing plugin hook is one line
    except HarnessError as exc:
        fail(exc)
    if kind is not None and kind not in parts:
        fail(HarnessError(f"--kind: unknown kind {kind!r}; known: {', '.join(registry.parts)}"))
    kinds = [kind] if kind else list(registry.parts)
    if name is not None:
        _show_part(registry, name, kinds)
        return
    table = Table()
    for column in ("kind", "name", "parameters", "source"):
        table.add_column(column, no_wrap=column != "parameters")
    if full:
        table.add_column("description", overflow="fold", ratio=1)
    else:
        table.add_column("description", overflow="ellipsis", no_wrap=True, max_width=60)
    for part_kind in kinds:
        for part_name, info in registry.parts[part_kind].items():
            params = ", ".join(
                p.name if p.required else f"{p.name}={p.default!r}" for p in info.params
            )
            summary = info.summary if full else info.summary.split(". ")[0].split(" (")[0]
            table.add_row(part_kind, part_name, escape(params) or "–", info.source, escape(summary))
    console.print(table)
    if not full:
        console.print("whole descriptions: harness list --full, or harness list NAME")


def _show_part(registry, name: str, kinds: list[str]) -> None:
    """``harness list NAME``: every part of that name, with all it declares."""
    import difflib
    import inspect

    found = [registry.parts[k][name] for k in kinds if name in registry.parts[k]]
    if not found:
        names = sorted({n for k in kinds for n in registry.parts[k]})
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        fail(HarnessError(f"no part named {name!r}{hint} (harness list shows them all)"))
    for info in found:
        console.print(f"[bold]{info.kind} {escape(info.name)}[/bold]  ({escape(info.source)})")
        console.print(escape(inspect.getdoc(info.cls) or "(no description)"), highlight=False)
        console.print(f"code: {escape(str(info.identity))}", highlight=False, soft_wrap=True)
        console.print("parameters:" if info.params else "parameters: none")
        for p in info.params:
            default = "required" if p.required else f"default {p.default!r}"
            console.print(f"  {p.name}: {escape(_type_text(p.annotation))}, {default}")
        optimizer = getattr(info.cls, "default_optimizer", None)
        if info.kind == "constraint" and optimizer:
            from harness.parts import Constraint

            own = "" if optimizer is not Constraint.default_optimizer else " (the harness default)"
            text = ", ".join(f"{k} {v}" for k, v in optimizer.items())
            console.print(f"optimizer: {escape(text)}{own}", highlight=False)


def _type_text(annotation) -> str:
    """``Annotated[int, Field(ge=1)]`` as ``int, >= 1``: a parameter's type and bounds."""
    import typing

    bounds = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        limits = []
        for extra in extras:
            for item in [extra, *getattr(extra, "metadata", [])]:
                limits += [
                    f"{sign} {getattr(item, key)}"
                    for key, sign in bounds.items()
                    if getattr(item, key, None) is not None
                ]
        return ", ".join([_type_text(base), *dict.fromkeys(limits)])
    if annotation is typing.Any:
        return "any"
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


@app.command("new-plugin")
def new_plugin(
    kind: Annotated[str, typer.Argument(help="constraint, loss, architecture or dataset.")],
    name: Annotated[str, typer.Argument(help="The part's name in suites, e.g. half_clip.")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Package directory (default: ./harness-NAME).")
    ] = None,
):
    """Write a plugin package: a working example part, its entry point, a test, a suite."""
    from harness import scaffold

    try:
        files = scaffold.create(kind, name, directory)
    except HarnessError as exc:
        fail(exc)
    console.print(f"wrote {kind} {name} as a package:", highlight=False)
    for line in [*map(str, files), "then:", *scaffold.next_steps(files[0].parent)]:
        console.print(line if line == "then:" else f"  {line}", highlight=False, soft_wrap=True)


data_app = typer.Typer(help="Get data suites read from --data-dir (explicit, opt-in downloads).")
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="The dataset: mnist (full MNIST, 70,000 digits).")],
    data_dir: Annotated[
        Path, typer.Option(help="Where to put it; pass the same --data-dir to run and validate.")
    ] = Path("data"),
):
    """Download a dataset through torchvision (its mirrors, md5 checks and progress bar) to
    where `source: torchvision` reads it. $HARNESS_MNIST_MIRROR replaces the mirror list."""
    from harness.data_fetch import fetch

    try:
        done = fetch(name, data_dir)
    except HarnessError as exc:
        fail(exc, 1)
    console.print(done, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    app()
