"""Numbers in the docs, generated from committed run data: ``harness docs build`` rewrites every
generated section of README.md and results/*.md from the CSV files of the results folders, and
``harness docs check`` names the first section whose text differs from what the data gives (a
hand-edited number, a stale table, a changed ``runs.csv``).

A section is a pair of HTML comments around generated Markdown:

    <!-- harness: table results/mnist_modes metrics=modes_covered,fid_mnist -->
    ... (generated) ...
    <!-- /harness -->

Kinds (FOLDER is a results folder holding a report's ``runs.csv``; options are ``key=value``):

- ``table FOLDER [metrics=a,b] [by=setting]`` — mean ± 95 % CI over seeds, runs, bad runs;
- ``runs FOLDER metrics=a,b`` — one row per run (strategy, setting, seed, the metrics);
- ``compare FOLDER A B metrics=a,b [by=setting]`` — A against B under the verdict rule
  (:mod:`harness.analysis.verdicts`), Holm over the metrics listed (and the settings of a
  sweep, compared one by one with ``by=setting``);
- ``verdict FOLDER A B metrics=a,b`` — the same comparison as one sentence, the metrics grouped
  by the words the rule grants;
- ``robustness FOLDER metric=m`` — the robustness view over a sweep's settings;
- ``curve FOLDER metrics=a,b`` — each metric at every evaluation step, per strategy (mean over
  seeds, from ``curves.csv``): has the run levelled off?
- ``convergence FOLDER metric=m`` — per strategy, whether ``m`` levelled off by the stated
  criterion (:mod:`harness.analysis.convergence`);
- ``made FOLDER`` — how the runs were made: runs, seeds, steps, protocol, harness version and
  commit, device, torch, CPU, threads, and the invocations' wall time (from ``invocations.csv``);
- ``scores FILE... [metrics=a,b]`` — the rows ``harness score --out FILE`` wrote, one per file
  (what was scored, the dataset, the metrics).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.analysis import convergence, robustness, tables, verdicts
from harness.core.errors import HarnessError
from harness.core.registry import Registry

SECTION = re.compile(r"<!-- harness: (?P<spec>[^>]*?) -->\n(?P<body>.*?)<!-- /harness -->", re.S)


@dataclass(frozen=True)
class Section:
    path: Path
    line: int
    spec: str
    body: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.spec}"


def sections(path: Path) -> list[Section]:
    text = path.read_text()
    return [
        Section(path, text.count("\n", 0, m.start()) + 1, m["spec"].strip(), m["body"])
        for m in SECTION.finditer(text)
    ]


def render(spec: str, root: Path) -> str:
    """The generated Markdown of one section (ending in a newline)."""
    words = shlex.split(spec)
    kind, args = words[0], [w for w in words[1:] if "=" not in w]
    options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    if not args:
        raise HarnessError(f"{spec}: name a results folder")
    metrics = options["metrics"].split(",") if "metrics" in options else None
    if kind == "scores":
        return scores_table([root / a for a in args], metrics)
    folder = root / args[0]
    frame = read_runs(folder)
    directions = Registry().directions()
    if kind == "table":
        metrics = metrics or tables.default_metrics(frame, directions)
        if options.get("by") == "setting":
            table = robustness.by_setting(frame, metrics, directions)
        else:
            table = tables.aggregate(frame, metrics, directions)
        return tables.render(
            table, metrics, directions, "markdown", tables.footnote(frame, metrics)
        )
    if kind == "runs":
        return runs_table(frame, metrics or tables.default_metrics(frame, directions))
    if kind in ("compare", "verdict"):
        a, b = args[1:3]
        metrics = metrics or tables.default_metrics(frame, directions)
        by_setting = options.get("by") == "setting"
        table = verdicts.compare(frame, a, b, metrics, directions, by_setting=by_setting)
        write = verdicts.render if kind == "compare" else verdicts.sentence
        return write(table, a, b)
    if kind == "robustness":
        metric = options["metric"]
        table = robustness.robustness(frame, metric, directions, robustness.modes_of(frame))
        return robustness.render(table, metric, directions[metric])
    if kind == "curve":
        return curve_table(folder, metrics or ["modes_covered"])
    if kind == "convergence":
        metric = options.get("metric", "modes_covered")
        return convergence.render(convergence.convergence(read_curves(folder), metric), metric)
    if kind == "made":
        return made(frame, folder)
    kinds = "table, runs, compare, verdict, robustness, curve, convergence, made, scores"
    raise HarnessError(f"{spec}: unknown kind {kind!r} ({kinds})")


def read_runs(folder: Path) -> pd.DataFrame:
    """A results folder's ``runs.csv`` as the frame tables are made from."""
    path = folder / "runs.csv"
    if not path.is_file():
        raise HarnessError(f"{path}: missing (harness report --out {folder} writes it)")
    frame = pd.read_csv(path, dtype={"setting": str, "eval_protocol": str})
    frame["setting"] = frame["setting"].fillna("")
    for column in frame.columns:  # params read as numbers are shown as they were logged
        if column in tables.PROTOCOL_PARAMS or column == "harness_version":
            frame[column] = frame[column].astype(str)
    return frame


def runs_table(frame: pd.DataFrame, metrics: list[str]) -> str:
    """One row per run: strategies in the frame's order, then setting and seed."""
    order = {name: i for i, name in enumerate(dict.fromkeys(frame["strategy"]))}
    frame = frame.sort_values(["strategy", "setting", "seed"], key=_by(order))
    sweep = frame["setting"].ne("").any()
    header = ["strategy", *(["setting"] if sweep else []), "seed", "status", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.to_dict("records"):
        cells = [row["strategy"], *([row["setting"]] if sweep else []), str(row["seed"])]
        cells += [row["status"]] + [
            "–" if pd.isna(row.get(m)) else f"{row[m]:.4g}" for m in metrics
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scores_table(paths: list[Path], metrics: list[str] | None) -> str:
    """The rows of ``harness score --out`` files: samples, dataset, then the metrics (all the
    numeric columns unless named)."""
    rows = []
    for path in paths:
        if not path.is_file():
            raise HarnessError(f"{path}: missing (harness score ... --out {path} writes it)")
        rows.append(pd.read_csv(path, keep_default_na=False))
    frame = pd.concat(rows, ignore_index=True)
    metrics = metrics or [c for c in frame.columns if c not in ("samples", "dataset", "params")]
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        raise HarnessError(f"{', '.join(map(str, paths))}: no column {', '.join(missing)}")
    header = ["samples", "dataset", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.to_dict("records"):
        cells = [str(row["samples"]), str(row["dataset"])]
        cells += ["–" if row[m] == "" else f"{float(row[m]):.4g}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_curves(folder: Path) -> pd.DataFrame:
    """A results folder's ``curves.csv``: every metric at every evaluation of every run."""
    path = folder / "curves.csv"
    if not path.is_file():
        raise HarnessError(f"{path}: missing (harness report --out {folder} writes it)")
    curves = pd.read_csv(path, dtype={"setting": str})
    curves["setting"] = curves["setting"].fillna("")
    return curves


def curve_table(folder: Path, metrics: list[str]) -> str:
    """Rows strategy × metric, the mean over seeds, a column per step at which the first
    metric listed (and present) was measured: put an evaluation metric first, and training
    losses logged more often are shown at the evaluation steps."""
    curves = read_curves(folder)
    curves = curves[curves["metric"].isin(metrics)]
    if curves.empty:
        raise HarnessError(f"{folder / 'curves.csv'}: no curve of {', '.join(metrics)}")
    means = curves.groupby(["strategy", "metric", "step"], sort=False)["value"].mean()
    headline = next(m for m in metrics if m in set(curves["metric"]))
    steps = sorted(curves.loc[curves["metric"] == headline, "step"].unique())
    table = means.unstack("step")[steps]
    seeds = curves.groupby("strategy", sort=False)["seed"].nunique()
    lines = ["| strategy | metric | " + " | ".join(f"{s:,}" for s in steps) + " |"]
    lines.append("|" + "---|" * (len(steps) + 2))
    order = {m: i for i, m in enumerate(metrics)}
    rows = sorted(table.index, key=lambda k: (list(seeds.index).index(k[0]), order[k[1]]))
    for strategy, metric in rows:
        cells = ["–" if pd.isna(v) else f"{v:.4g}" for v in table.loc[(strategy, metric)]]
        n = int(seeds[strategy])
        name = f"{strategy} ({n} seed{'s' * (n != 1)})"
        lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _by(order: dict[str, int]):
    """A sort key: strategies by ``order``, other columns as they are."""
    return lambda column: column.map(order) if column.name == "strategy" else column


def made(frame: pd.DataFrame, folder: Path) -> str:
    """How a folder's runs were made, every figure read from its CSV files."""

    def values(column: str) -> str:
        found = sorted(map(str, frame[column].dropna().unique())) if column in frame else []
        return ", ".join(found) or "unrecorded"

    seeds = ", ".join(map(str, sorted(frame["seed"].unique())))
    settings = frame["setting"].replace("", pd.NA).dropna().nunique()
    lines = [
        f"- Runs: {len(frame)} ({frame['strategy'].nunique()} strategies"
        + (f" × {settings} settings" if settings else "")
        + f"; seeds {seeds}); {int(frame['status'].isin(tables.BAD).sum())} diverged or failed.",
        f"- Budget: {values('train.steps')} training steps, batch {values('train.batch_size')}, "
        f"{values('eval.samples')} evaluation samples; protocol {values('eval_protocol')}.",
        f"- Code: harness {values('harness_version')}; device {values('device')}, torch "
        f"{values('torch_version')}, CPU instructions {values('cpu_capability')}, "
        f"{values('torch_threads')} torch thread(s) per run, Python {values('python_version')}.",
    ]
    invocations = folder / "invocations.csv"
    if invocations.is_file():
        calls = pd.read_csv(invocations)
        wall = calls["wall_seconds"].sum()
        commits = ", ".join(sorted({str(c)[:7] for c in calls["git_commit"].dropna()}))
        lines.append(
            f"- Wall time: {_duration(wall)} in {len(calls)} invocation(s) "
            f"({', '.join(calls['start'].astype(str).str[:10].unique())}; commit {commits})."
        )
    if "train_seconds" in frame:
        lines.append(
            f"- Training time per run: median {_duration(frame['train_seconds'].median())}, "
            f"range {_duration(frame['train_seconds'].min())}–"
            f"{_duration(frame['train_seconds'].max())} (evaluation apart)."
        )
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    if pd.isna(seconds):
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def build(paths: list[Path], root: Path) -> list[Section]:
    """Rewrite every section of ``paths`` from the data; the sections whose text changed.
    Every section is rendered before any file is written: a section its data cannot give
    leaves every file as it was."""
    changed: list[Section] = []
    texts = {}
    for path in paths:
        text, parts, last = path.read_text(), [], 0
        for match in SECTION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            section = Section(path, line, match["spec"].strip(), match["body"])
            fresh = rendered(section, root)
            if fresh != match["body"]:
                changed.append(section)
            parts += [text[last : match.start("body")], fresh]
            last = match.end("body")
        texts[path] = "".join(parts) + text[last:]
    for path, text in texts.items():
        path.write_text(text)
    return changed


def check(paths: list[Path], root: Path) -> Section | None:
    """The first section whose text is not what the data gives, or None."""
    for path in paths:
        for section in sections(path):
            if rendered(section, root) != section.body:
                return section
    return None


def rendered(section: Section, root: Path) -> str:
    """:func:`render` of one section, its errors naming the file, line and section."""
    try:
        return render(section.spec, root)
    except HarnessError as exc:
        raise HarnessError(f"{section}: {exc}") from None


def default_paths(root: Path) -> list[Path]:
    """README.md and every results/*.md."""
    return [root / "README.md", *sorted((root / "results").glob("*.md"))]
