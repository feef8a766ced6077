"""What an invocation trains and why: the one rule that decides whether a run is trained,
skipped or rerun (:func:`decide`), the ``--only``/``--rerun`` strategy lists, and the line that
says why each run trains (a new seed, a changed plugin, a resumed run, ...)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from harness.core.errors import HarnessError
from harness.core.registry import suggest
from harness.core.spec import RunSpec, Suite
from harness.core.version import __version__
from harness.run.store import COMPLETED, IDENTITY, RESUMABLE, VERSION, StoredRun, spec_params


def decide(spec: RunSpec, completed: Iterable[str], rerun: Iterable[str]) -> str:
    """``"skip"`` when a finished run has ``spec``'s key and its strategy is not rerun, else
    ``"train"`` (a new run, a resumed one, or a rerun beside the finished one). Applied when an
    invocation plans and again by each job under its run's claim."""
    if spec.run_key in completed and spec.strategy not in rerun:
        return "skip"
    return "train"


def select(suite: Suite, only: str | None, rerun: str | None) -> tuple[Suite, set[str]]:
    """The suite reduced to the strategies ``--only`` names (all when None), and the strategies
    ``--rerun`` names; an unknown name is an error naming the option, with the closest name."""
    strategies = suite.config.strategies
    rerun_set = strategy_set(rerun, strategies, "--rerun")
    if only is not None:
        kept = strategy_set(only, strategies, "--only")
        if rerun and rerun.strip() != "all" and rerun_set - kept:
            left = ", ".join(sorted(rerun_set - kept))
            raise HarnessError(f"--rerun {left}: not among the strategies --only trains ({only})")
        rerun_set &= kept
        suite = suite.model_copy(update={"runs": [r for r in suite.runs if r.strategy in kept]})
    return suite, rerun_set


def strategy_set(option: str | None, strategies: Iterable[str], flag: str) -> set[str]:
    """``--rerun``/``--only`` ``a,b`` or ``all`` -> the strategy names; an unknown one is an
    error naming ``flag``, with the closest name."""
    known = list(strategies)
    if option is None:
        return set()
    names = [n.strip() for n in option.split(",") if n.strip()]
    if not names:
        raise HarnessError(f"{flag} {option!r}: name strategies, A,B (or all)")
    if names == ["all"]:
        return set(known)
    for name in names:
        if name not in known:
            raise HarnessError(f"{flag}: no strategy {name!r} in the suite{suggest(name, known)}")
    return set(names)


def plan(
    specs: list[RunSpec], trained: list[RunSpec], runs: list[StoredRun], rerun: set[str]
) -> str:
    """One line: how many runs train and why, and how many are skipped."""
    reasons = Counter(why(s, runs, s.strategy in rerun) for s in trained)
    skipped = len(specs) - len(trained)
    if not trained:
        return f"all {len(specs)} runs finished: skipped (--rerun STRATEGY|all retrains them)"
    text = ", ".join(f"{reason} ({n})" for reason, n in reasons.most_common())
    tail = f"; {skipped} finished, skipped" if skipped else ""
    return f"training {len(trained)} of {len(specs)} runs: {text}{tail}"


def why(spec: RunSpec, runs: list[StoredRun], rerun: bool) -> str:
    """Why ``spec`` trains, given the experiment's logged runs (oldest first)."""
    key = spec.run_key
    same = [r.status for r in runs if r.run_key == key]
    if any(s in COMPLETED for s in same):
        return "--rerun" if rerun else "finished meanwhile"
    if any(s in RESUMABLE for s in same):
        return "resuming an unfinished run"
    if same:
        return "retrying a failed run"
    strategy = [r for r in runs if r.strategy == spec.strategy]
    setting = [r for r in strategy if r.setting == (spec.setting or "")]
    mine = [r for r in setting if r.seed == str(spec.seed)]
    if not mine:
        return "new seed" if setting else "new setting" if strategy else "new strategy"
    done = [r for r in mine if r.status in COMPLETED]
    now = spec_params(spec)
    settings = [k for k in now if not k.startswith(IDENTITY)]

    def unlike(run: StoredRun) -> int:  # how many settings differ (another profile's run: many)
        return sum(run.params.get(k) != now[k] for k in settings)

    before = min(reversed(done or mine), key=unlike).params  # the closest, newest first
    old = before.get(VERSION)
    if old is not None and old != __version__:  # it re-keys every run: name it, not each part
        return f"harness {old} -> {__version__}"
    logged = {k for k in before if k.startswith(IDENTITY)}
    if not logged:
        return "run before code identity was recorded"
    changed = [
        k[len(IDENTITY) :].replace(".", " ", 1)
        for k in sorted(logged & set(now))  # parts swapped for others: a settings change
        if now[k] != before[k]
    ]
    if changed:
        return f"{', '.join(changed)} changed"
    changed = [k for k in settings if before.get(k) != now[k]]
    if changed:
        more = ", ..." if len(changed) > 2 else ""
        return f"settings changed ({', '.join(changed[:2])}{more})"
    return "run key changed"
