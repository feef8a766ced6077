"""What ``harness table`` prints, as one call: the comparison table of a suite's runs, or by
sweep setting, or the robustness view over settings, or two strategies compared."""

from __future__ import annotations

from harness.analysis import robustness as views
from harness.analysis import tables, verdicts
from harness.analysis.tables import Source
from harness.core.errors import HarnessError
from harness.core.registry import Registry


def table_text(
    source: Source,
    *,
    metrics: str | None = None,
    fmt: str = "markdown",
    compare: tuple[str, str] | None = None,
    by: str | None = None,
    robustness: bool = False,
    metric: str | None = None,
) -> str:
    """The table of the runs ``source`` names, in ``fmt`` (markdown, csv, latex, html):
    ``metrics`` ("a,b"; default: those the end-of-run table shows), a row per strategy (or per
    strategy × setting with ``by="setting"``); ``robustness`` gives each strategy's spread over
    a sweep's settings for ``metric`` (default: the first shown); ``compare`` two strategies
    (setting by setting with ``by="setting"``, Holm over every metric and setting)."""
    frame = tables.load(source)
    known = Registry().directions()
    chosen = metrics.split(",") if metrics else tables.default_metrics(frame, known)
    if by not in (None, "setting"):
        raise HarnessError(f"--by: expected 'setting', got {by!r}")
    if robustness:
        name = metric or next((m for m in chosen if m in known), "")
        result = views.robustness(frame, name, known, views.modes_of(frame))
        return views.render(result, name, known[name], fmt)
    if compare:
        table = verdicts.compare(frame, *compare, chosen, known, by_setting=by == "setting")
        return verdicts.render(table, *compare, fmt)
    if by == "setting":
        result = views.by_setting(frame, chosen, known)
    else:
        result = tables.aggregate(frame, chosen, known)
    return tables.render(result, chosen, known, fmt, tables.footnote(frame, chosen))
