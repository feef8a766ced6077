"""What the ``harness`` command prints: progress of a run (rich bars on a terminal, timestamped
lines elsewhere), the end-of-run table, the description of a validated suite, the list of
parts, and one-line errors. Rich only at import: the CLI must start fast."""

from __future__ import annotations

import contextlib
import sys
import time

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.core.errors import HarnessError, printable

console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
PROGRESS_SECONDS = 30.0  # without a terminal: a run's step lines at most this often


def error(exc: Exception) -> None:
    """An error in one line on stderr: ``error: ...``, control characters escaped."""
    err.print(f"[red]error:[/red] {escape(printable(str(exc)))}", highlight=False, soft_wrap=True)


def fail(exc: Exception, code: int = 2):
    """The error in one line on stderr, then exit ``code``."""
    error(exc)
    raise typer.Exit(code)


def write_file(path, text: str) -> None:
    """Write an output file (its folder created), or fail in one line naming it: a directory
    in its place, a read-only or full disk."""
    if path.is_dir():
        fail(HarnessError(f"--out {path}: a directory; give a file name"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        fail(HarnessError(f"--out {path}: {exc.strerror or exc}"))


# --- harness run ------------------------------------------------------------------------


@contextlib.contextmanager
def reporter():
    """Rich bars on a terminal; plain lines without one (a log file, CI, nohup, a cluster job),
    where bars would not draw. ``TTY_COMPATIBLE=1`` or ``0`` forces one or the other."""
    if not console.is_terminal:
        yield LineReporter(console)
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    try:
        yield BarReporter(bars)
    finally:
        bars.stop()


def _header(suite, device: str, uri: str) -> str:
    from harness.analysis.report import shown_uri

    name = escape(suite.config.name)
    return (
        f"[bold]{name}[/bold] ({escape(suite.profile or 'default')} profile): {len(suite.runs)} "
        f"runs on {device}, tracking at {escape(shown_uri(uri))}"
    )


def _run_name(spec) -> str:
    return f"{spec.strategy}{f' @ {spec.setting}' if spec.setting else ''} seed {spec.seed}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


class LineReporter:
    """Progress as timestamped lines: one when a run starts, one when it ends (status, time,
    key metrics), and one at logging points at most every ``PROGRESS_SECONDS`` between."""

    def __init__(self, out: Console):
        self.out = out
        self.started: dict[str, float] = {}

    def _line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.out.print(f"{stamp} {escape(text)}", highlight=False, soft_wrap=True)

    def starting(self, suite, device: str, uri: str) -> None:
        self.out.print(_header(suite, device, uri))

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
            from harness.analysis.summary import SHOWN

            shown = [k for k in SHOWN if k in outcome.metrics][:5]
            detail = ", ".join(f"{k} {outcome.metrics[k]:.4g}" for k in shown)
        if outcome.execution.startswith("stacked:"):
            took += f" (one of {outcome.execution.split(':')[1]} stacked)"
        self._line(f"end {name}: {outcome.status}{took}" + (f"; {detail}" if detail else ""))


class BarReporter:
    """A bar per run; with --jobs the bars move when runs end (workers report no steps). The
    bars start once the suite is valid, so an error before is one plain line."""

    def __init__(self, bars: Progress):
        self.bars = bars
        self.tasks: dict[str, int] = {}

    def starting(self, suite, device: str, uri: str) -> None:
        self.bars.console.print(_header(suite, device, uri))
        self.bars.start()

    def planned(self, plan: str) -> None:
        self.bars.console.print(escape(plan), highlight=False, soft_wrap=True)

    def run_started(self, spec):
        task = self.bars.add_task(_run_name(spec), total=spec.train.steps, info="")
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


def outcomes(results) -> int:
    """The end-of-run table (mean ± std over seeds), a line per run another invocation holds
    and per failed run; returns the exit code (1 when a run failed)."""
    from harness.analysis.summary import outcomes_frame, summary_columns, summary_table

    frame = outcomes_frame(results)
    table = summary_table(frame, summary_columns(frame))
    out = Table(title="mean ± std over seeds")
    out.add_column("strategy")
    for column in table.columns:
        out.add_column(str(column), justify="right")
    for name, row in table.iterrows():
        out.add_row(str(name), *(str(v) for v in row))
    console.print(out)
    for o in results:
        if o.status == "held":  # another live invocation trains it; it is not redone here
            err.print(f"{escape(o.spec.strategy)} seed {o.spec.seed}: {o.error}, skipped")
    failed = [o for o in results if o.status == "failed"]
    for o in failed:
        at = f" @ {o.spec.setting}" if o.spec.setting else ""
        err.print(f"[red]failed:[/red] {o.spec.strategy}{at} seed {o.spec.seed}: {o.error}")
    return 1 if failed else 0


# --- harness validate -------------------------------------------------------------------


def suite_summary(path, loaded, profiles: dict | None = None) -> None:
    """What a valid suite expands to: strategies × settings × seeds, each strategy's loss,
    constraint and optimiser, the plugin modules it imports, and what each profile expands to
    (or why its data could not be checked here)."""
    config = loaded.config
    console.print(
        f"{path}: ok — {len(config.strategies)} strategies"
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
            f"{opt.name} lr {opt.lr:g}"
            + (f" betas {opt.betas}" if opt.betas else "")
            + f", {schedule(spec.train)}"
            + swept,
            highlight=False,
            soft_wrap=True,
        )
    modules = [f"{m} ({getattr(sys.modules[m], '__file__', '?')})" for m in config.plugins]
    imports = ", ".join(modules) or "no suite-local plugin modules"
    console.print(f"  imports: {imports}", highlight=False, soft_wrap=True)
    for name, profile in (profiles or {}).items():
        if isinstance(profile, str):  # its data lives elsewhere: checked with --data-dir
            text = f"  profile {name}: valid; its data is not here ({profile})"
        else:
            text = f"  profile {name}: ok — {len(profile.runs)} runs of "
            text += f"{profile.config.train.steps} steps"
        console.print(escape(printable(text)), highlight=False, soft_wrap=True)


def schedule(train) -> str:
    """``critic:generator updates 5:1`` (``, simultaneous`` when they are)."""
    text = f"critic:generator updates {train.n_critic}:{train.generator_steps}"
    if not train.generator_steps:
        text += " (a fixed generator)"
    return text + (", simultaneous" if train.updates == "simultaneous" else "")


def _params(params: dict) -> str:
    """``(k=v, ...)`` as rich text: user values are escaped, never markup or control codes."""
    text = f"({', '.join(f'{k}={v}' for k, v in params.items())})" if params else ""
    return escape(printable(text))


# --- harness list -----------------------------------------------------------------------


def parts_table(registry, kinds: list[str], full: bool) -> None:
    """Every registered part of ``kinds``: kind, name, parameters with defaults, source
    package and description (its first sentence, or whole with ``full``)."""
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
            summary = info.summary if full else _first_sentence(info.summary)
            table.add_row(part_kind, part_name, escape(params) or "–", info.source, escape(summary))
    console.print(table)
    if not full:
        console.print("whole descriptions: harness list --full, or harness list NAME")


def _first_sentence(text: str) -> str:
    """A description's first sentence, before any parenthesis; "…" when that cut something."""
    short = text.split(". ")[0].split(" (")[0].rstrip(".")
    return short if short == text.rstrip(".") else f"{short} …"


def show_part(registry, name: str, kinds: list[str]) -> None:
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
            from harness.core.parts import Constraint

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
