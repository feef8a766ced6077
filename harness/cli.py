"""The ``harness`` command: each command parses its options, calls one function of the run or
analysis layer, prints (:mod:`harness.console`) and exits. Heavy modules are imported inside
the commands that need them, so ``harness --help``, ``list`` and ``validate`` start fast."""

from __future__ import annotations

import atexit
import gc
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from rich.markup import escape
from rich.table import Table

from harness.console import (
    console,
    err,
    error,
    fail,
    outcomes,
    parts_table,
    reporter,
    show_part,
    suite_summary,
    write_file,
)
from harness.core.errors import HarnessError


class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (a missing argument, an unknown option, a value out of range) as one line,
    ``error: ...`` and exit 2, like every other error of the command, not a box of usage."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        if hasattr(signal, "SIGPIPE") and threading.current_thread() is threading.main_thread():
            # `harness ... | head`: end quietly, as Unix tools do
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            err.print("aborted")
            sys.exit(1)
        except typer.TyperException as exc:  # click's own: usage errors, bad option values
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # `harness` alone: the help itself
                sys.exit(exc.exit_code)
            where = exc.ctx.command_path if getattr(exc, "ctx", None) else "harness"
            error(HarnessError(f"{where}: {exc.format_message()}"))
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def leave_objects_to_the_os() -> None:
    """At exit: the interpreter's last garbage collection walks every object torch, MLflow
    and pandas made (0.7 s of a command that imported them), to free memory the OS frees
    anyway; frozen objects are skipped (atexit handlers and stream flushes still run). Not
    once triton is loaded (torch imports it with the first optimiser): its bindings print
    every object left unfreed as a leak."""
    if "triton" not in sys.modules:
        gc.freeze()


atexit.register(leave_objects_to_the_os)


def usage_name(argument) -> str:
    """An argument as click's usage lines name it (SUITE, [SAMPLES], FILES...); typer 0.29
    braces required ones ({SUITE}), which reads as a placeholder left unfilled."""
    name = argument.display_name_raw
    name = name if argument.required else f"[{name}]"
    return name + ("..." if argument.nargs != 1 else "")


typer.core.TyperArgument._usage_display_name = usage_name

app = typer.Typer(
    cls=OneLineErrors,
    help="Benchmark Lipschitz strategies for GAN critics: run suites, list plugins, compare.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


MAX_RUNS = 500  # harness.run.loading.MAX_RUNS, not imported here: the CLI starts fast


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"


class Executor(StrEnum):
    local = "local"
    ray = "ray"


# options several commands share, then those of `run`
SuiteArg = Annotated[
    Path, typer.Argument(metavar="SUITE", help="Suite YAML file, e.g. suites/mnist_modes.yaml.")
]
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
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else results/mlflow.db)."
    ),
]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Where on-disk datasets live (mnist source torchvision).")
]
ExperimentOpt = Annotated[str | None, typer.Option(help="Experiment name instead.")]
ParentOpt = Annotated[str | None, typer.Option(help="Only runs of this parent run id.")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda[:N].")]
SeedsOpt = Annotated[str | None, typer.Option(help="Override the suite's seeds: 0,1,2.")]
CheckpointOpt = Annotated[
    int, typer.Option(min=1, help="Checkpoint at least every N steps (and at evaluations).")
]
JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        min=1,
        envvar="HARNESS_JOBS",
        show_default="one per usable core, capped by the runs to train; 1 on a GPU",
        help="Runs trained at once, in processes (1: in this process, with step progress).",
    ),
]
ThreadsOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Torch CPU threads per run, whatever --jobs is (logged; the count changes CPU "
        "numerics in the last bits).",
    ),
]
PrecisionOpt = Annotated[
    Precision | None,
    typer.Option(
        help="bf16 autocasts forward passes; part of the run key (default: the suite's "
        "train.precision, fp32)."
    ),
]
CompileOpt = Annotated[
    bool, typer.Option("--compile", help="torch.compile generator and critic (eager if it fails).")
]
ExecutorOpt = Annotated[
    Executor, typer.Option(help="local: --jobs processes here; ray: one Ray task per run.")
]
AddressOpt = Annotated[
    str | None,
    typer.Option(help="Ray cluster: auto or ray://HOST:10001 (default: start a local one)."),
]
GpusOpt = Annotated[
    float, typer.Option(min=0, help="GPUs per Ray task: 0.25 puts four runs on a GPU.")
]
StackOpt = Annotated[
    bool | None,
    typer.Option(
        "--stack/--no-stack",
        show_default="each run's train.stack: auto, stacked where a trial measures it faster",
        help="Train runs that differ only in seed and optimiser settings as one stacked model "
        "(--stack: wherever the parts declare support, unmeasured), or each alone.",
    ),
]
MaxMembersOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=1024,
        show_default="16 on CPU, 64 on a GPU",
        help="Most runs in one stacked model.",
    ),
]
RerunOpt = Annotated[
    str | None, typer.Option(help="Retrain these strategies' finished runs anyway: A,B or all.")
]
OnlyOpt = Annotated[
    str | None,
    typer.Option(help="Train only these strategies: A,B (the others' runs are left as they are)."),
]


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise HarnessError(f"--seeds: expected comma-separated integers, got {text!r}") from None


@app.command()
def run(
    suite: SuiteArg,
    profile: ProfileOpt = None,
    device: DeviceOpt = "auto",
    tracking_uri: TrackingOpt = None,
    seeds: SeedsOpt = None,
    data_dir: DataDirOpt = None,
    checkpoint_every: CheckpointOpt = 500,
    jobs: JobsOpt = None,
    threads: ThreadsOpt = 1,
    precision: PrecisionOpt = None,
    compile_models: CompileOpt = False,
    executor: ExecutorOpt = Executor.local,
    address: AddressOpt = None,
    gpus_per_run: GpusOpt = 0.0,
    stack: StackOpt = None,
    max_members: MaxMembersOpt = None,
    rerun: RerunOpt = None,
    only: OnlyOpt = None,
    max_runs: MaxRunsOpt = MAX_RUNS,
):
    """Train every (strategy, setting, seed) run of SUITE, log to MLflow, print a table."""
    from harness.run.invocation import RunRequest, invoke
    from harness.run.runner import Interrupts, RunSettings

    settings = RunSettings(
        device=device,
        data_dir=data_dir,
        checkpoint_every=checkpoint_every,
        jobs=jobs,
        threads=threads,
        compile=compile_models,
        executor=executor.value,
        address=address,
        gpus_per_run=gpus_per_run,
        stack=None if stack is None else ("on" if stack else "off"),
        max_members=max_members,
    )
    with reporter() as progress, Interrupts.watch():
        try:
            request = RunRequest(
                suite, profile, parse_seeds(seeds), precision and precision.value, max_runs,
                only, rerun, tracking_uri, settings,
            )  # fmt: skip
            results = invoke(request, progress)
        except KeyboardInterrupt:
            stop = "terminated (SIGTERM)" if Interrupts.terminated else "interrupted"
            err.print(f"{stop}: runs in training were marked interrupted; run again to resume")
            raise typer.Exit(143 if Interrupts.terminated else 130) from None
        except HarnessError as exc:
            fail(exc)
    raise typer.Exit(outcomes(results))


@app.command()
def validate(
    suite: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    profile: ProfileOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where on-disk datasets live: their files are checked.")
    ] = None,
    max_runs: MaxRunsOpt = MAX_RUNS,
):
    """Check SUITE without training: every plugin, parameter and type, the dataset's files,
    and what it imports; as written and under each of its profiles (or only --profile's)."""
    from harness.run.loading import load_suite, validate_profiles

    try:
        if profile is None:
            loaded, profiles = validate_profiles(suite, data_dir=data_dir, max_runs=max_runs)
        else:
            loaded, profiles = load_suite(suite, profile=profile, data_dir=data_dir)[0], {}
    except HarnessError as exc:
        fail(exc)
    suite_summary(suite, loaded, profiles)


@app.command()
def table(
    suite: Annotated[
        Path | None,
        typer.Argument(metavar="SUITE", help="Suite YAML whose experiment to tabulate."),
    ] = None,
    experiment: ExperimentOpt = None,
    runs: ParentOpt = None,
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metric names.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="markdown, csv, latex or html.")
    ] = "markdown",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    compare: Annotated[
        tuple[str, str] | None, typer.Option(help="Compare two strategies: --compare A B.")
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="setting: a row per strategy × sweep setting (with --compare: the two "
            "strategies setting by setting, Holm over all of them)."
        ),
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
    tracking_uri: TrackingOpt = None,
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
    from harness.analysis.tables import Source
    from harness.analysis.tabulate import table_text

    source = Source(suite, experiment, tracking_uri, runs, all_versions, protocol)
    try:
        text = table_text(
            source,
            metrics=metrics,
            fmt=fmt,
            compare=compare,
            by=by,
            robustness=robustness,
            metric=metric,
        )
    except HarnessError as exc:
        fail(exc)
    if out is None:
        sys.stdout.write(text)
    else:
        write_file(out, text)
        console.print(f"wrote {out}")


@app.command()
def score(
    dataset: Annotated[
        str, typer.Option(help="What the samples imitate: mnist, stacked_mnist, ring8, grid25.")
    ],
    samples: Annotated[
        Path | None,
        typer.Argument(
            metavar="SAMPLES", help="An .npy, .npz or .pt array, or a folder of PNG images."
        ),
    ] = None,
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
    real: Annotated[
        int | None,
        typer.Option(
            help="Score the first N real samples of the dataset's test split instead: what a "
            "perfect generator would get (the evaluator's ceiling).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also write the scores to this CSV file.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda[:N] or auto.")] = "cpu",
    data_dir: DataDirOpt = None,
    tracking_uri: TrackingOpt = None,
):
    """Score SAMPLES made elsewhere with the metrics a run logs (images: uint8 0–255, or floats
    in [0, 1] or [−1, 1]; toys: (N, 2) points), or --real N of the dataset's own samples."""
    from harness.run import scoring
    from harness.run.suite_file import experiment_name

    try:
        if (suite or experiment) and not log:
            raise HarnessError("--suite and --experiment say where --log records: add --log")
        target = experiment_name(suite, experiment) if (suite or experiment) else "score"
        values = scoring.score(
            samples,
            dataset,
            real=real,
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
    what = f"{real:,} real samples" if real else str(samples)
    shown = Table(title=f"{escape(what)} as {escape(dataset)}")
    shown.add_column("metric")
    shown.add_column("value", justify="right")
    for key, value in values.items():
        shown.add_row(escape(key), f"{value:.6g}")
    console.print(shown)
    if out is not None:
        write_file(out, scoring.scores_csv(values, what, dataset, param or []))
        console.print(f"wrote {escape(str(out))}")
    if "fid_mnist" in values:
        console.print(
            f"fid_mnist {values['fid_mnist']:.4g}; two real sets of "
            f"{values['fid_mnist_samples']:.0f} digits reach {values['fid_mnist_floor']:.4g}"
        )
    if log:
        label = scoring.run_name(name or (f"real-{real}" if real else None), what)
        console.print(f"logged as strategy {escape(label)} in experiment {escape(target)}")
        note = scoring.protocol_note(tracking_uri, target, label)
        if note:
            console.print(escape(note), highlight=False, soft_wrap=True)


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Directory for report.html, figures and tables.")],
    suite: Annotated[
        Path | None, typer.Argument(metavar="SUITE", help="Suite YAML whose experiment to report.")
    ] = None,
    experiment: ExperimentOpt = None,
    runs: ParentOpt = None,
    tracking_uri: TrackingOpt = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Include runs of older code, as in table.")
    ] = False,
    protocol: ProtocolOpt = None,
):
    """Write a self-contained HTML report: tables, curves, coverage, gradient norms, samples."""
    from harness.analysis.report import write_report
    from harness.analysis.tables import Source

    try:
        page = write_report(
            Source(suite, experiment, tracking_uri, runs, all_versions, protocol), out
        )
    except HarnessError as exc:
        fail(exc)
    console.print(
        f"wrote {page} (figures as PNG, table.md, table.csv, runs.csv, curves.csv, "
        "invocations.csv beside it)"
    )


@app.command("list")
def list_parts(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME",
            help="Show this part whole: description, parameters with types and bounds, source.",
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
    from harness.core.registry import Registry

    try:
        registry = Registry()
        parts = registry.parts  # registering every part: a failing plugin hook is one line
    except HarnessError as exc:
        fail(exc)
    if kind is not None and kind not in parts:
        fail(HarnessError(f"--kind: unknown kind {kind!r}; known: {', '.join(registry.parts)}"))
    kinds = [kind] if kind else list(registry.parts)
    if name is not None:
        show_part(registry, name, kinds)
    else:
        parts_table(registry, kinds, full)


@app.command("new-plugin")
def new_plugin(
    kind: Annotated[
        str, typer.Argument(metavar="KIND", help="constraint, loss, architecture or dataset.")
    ],
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The part's name in suites, e.g. half_clip.")
    ],
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


docs_app = typer.Typer(
    help="The numbers of README.md and results/*.md, generated from the results' CSV files."
)
app.add_typer(docs_app, name="docs")
DocsPaths = Annotated[
    list[Path] | None,
    typer.Argument(metavar="FILES", help="Markdown files (default: README.md and results/*.md)."),
]


def docs_pages(files: list[Path] | None):
    """The docs module, the pages to build or check (default: README.md and results/*.md) and
    the root their folders are relative to (the working directory)."""
    from harness.analysis import docs

    root = Path.cwd()
    return docs, files or docs.default_paths(root), root


@docs_app.command("build")
def docs_build(files: DocsPaths = None):
    """Rewrite every generated section (<!-- harness: KIND FOLDER ... -->) from the data."""
    docs, paths, root = docs_pages(files)
    try:
        changed = docs.build(paths, root)
    except HarnessError as exc:
        fail(exc)
    for section in changed:
        console.print(f"rebuilt {escape(str(section))}", highlight=False, soft_wrap=True)
    console.print(f"{len(changed)} section(s) changed")


@docs_app.command("check")
def docs_check(files: DocsPaths = None):
    """Exit 1 naming the first generated section that differs from what the data gives."""
    docs, paths, root = docs_pages(files)
    try:
        stale = docs.check(paths, root)
    except HarnessError as exc:
        fail(exc)
    if stale is not None:
        fail(HarnessError(f"{stale}: differs from its data (harness docs build rewrites it)"), 1)
    console.print("every generated section matches its data")


data_app = typer.Typer(help="Get data suites read from --data-dir (explicit, opt-in downloads).")
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The dataset: mnist (full MNIST, 70,000 digits).")
    ],
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


@data_app.command("train-evaluator")
def data_train_evaluator(
    data_dir: Annotated[
        Path, typer.Option(help="Where full MNIST is (as `harness data fetch mnist` put it).")
    ] = Path("data"),
):
    """Train the MNIST evaluator on full MNIST's 60,000 digits (as PacGAN's was: deterministic,
    one thread, a few minutes) and keep it in the cache; runs on full MNIST (`source:
    torchvision`) then measure with it, under their own protocol id."""
    from harness.evaluation.evaluator import full_weights
    from harness.evaluator_training import train_full

    console.print(f"training the evaluator on full MNIST from {data_dir} (one thread) …")
    try:
        saved = train_full(data_dir)
    except HarnessError as exc:
        fail(exc)
    console.print(
        f"wrote {full_weights()} (sha256 {saved['sha256'][:12]}…, test accuracy "
        f"{saved['test_accuracy']:.4f})",
        highlight=False,
        soft_wrap=True,
    )


if __name__ == "__main__":
    app()
