"""Run identity that sees code: each part's distribution, version and module source hash.

A run's key covers the code of every part it uses (dataset, architecture, loss, constraint,
metrics): editing a plugin module, or installing another version of its package, makes that
module's runs new. The components are logged as ``identity.KIND.NAME`` params, so a later
invocation can say *why* it trains a run, and tables can keep to runs of the current code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from typing import TYPE_CHECKING, Any

import harness

if TYPE_CHECKING:
    from harness.registry import Registry
    from harness.suite import RunSpec

PREFIX = "identity."


@dataclass(frozen=True)
class PartIdentity:
    """Where a part's code comes from: distribution and version (``local`` for a module no
    installed distribution provides), the module defining its class, and that module's
    source sha256."""

    dist: str
    version: str
    module: str
    sha256: str

    def __str__(self) -> str:
        return f"{self.dist}=={self.version} {self.module} sha256:{self.sha256}"


@lru_cache(maxsize=1)
def _module_owners() -> dict[str, list[str]]:
    return packages_distributions()


def part_identity(cls: type, dist: str | None = None) -> PartIdentity:
    """The identity of the code defining ``cls``; ``dist`` is the distribution whose entry
    point registered it, when known."""
    module = cls.__module__
    if dist is None:
        owners = _module_owners().get(module.split(".")[0])
        dist = owners[0] if owners else None
    try:
        release = version(dist) if dist else "-"
    except PackageNotFoundError:
        release = "-"
    return PartIdentity(dist or "local", release, module, source_hash(cls))


def source_hash(cls: type) -> str:
    """sha256 of the bytes of the file defining ``cls`` (its source text when it has no file);
    with the files of the modules named in its ``code_modules`` (code it imports lazily, such as
    its torch networks) when it names any."""
    own = _file_hash(cls)
    extra = getattr(cls, "code_modules", ())
    if not extra:
        return own
    digest = hashlib.sha256(own.encode())
    for name in extra:
        spec = importlib.util.find_spec(name)  # finds the file without importing torch
        if spec is None or not spec.origin:
            raise ValueError(f"{cls.__qualname__}.code_modules: no module {name!r}")
        with open(spec.origin, "rb") as file:
            digest.update(file.read())
    return digest.hexdigest()


def _file_hash(cls: type) -> str:
    try:
        path = inspect.getsourcefile(cls)
        if path:
            with open(path, "rb") as file:
                return hashlib.sha256(file.read()).hexdigest()
    except (OSError, TypeError):
        pass
    try:
        return hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()
    except (OSError, TypeError):
        return "unknown"


def code_identity(spec: RunSpec, registry: Registry) -> dict[str, str]:
    """``{"constraint.softclip": "dist==1.0 module sha256:...", ...}`` for every part of a run."""
    parts = [
        ("dataset", spec.dataset.name),
        ("architecture", spec.architecture.name),
        ("loss", spec.loss.name),
        ("constraint", spec.constraint.name),
        *(("metric", m.name) for m in spec.metrics),
    ]
    return {f"{kind}.{name}": str(registry.get(kind, name).identity) for kind, name in parts}


def is_current(params: dict[str, str], registry: Registry) -> bool:
    """Whether a logged run (its MLflow params) was made by the harness version and part code
    installed now. A run logged without identity is not; a part no longer registered cannot
    be checked and does not count against it."""
    if params.get("harness_version", harness.__version__) != harness.__version__:
        return False
    logged = {k[len(PREFIX) :]: v for k, v in params.items() if k.startswith(PREFIX)}
    if not logged:
        return False
    for part, value in logged.items():
        kind, _, name = part.partition(".")
        info = registry.parts.get(kind, {}).get(name)
        if info is not None and str(info.identity) != value:
            return False
    return True


def current_checker() -> Callable[[dict[str, str]], bool]:
    """:func:`is_current` over the installed parts and the suite-local plugin modules each
    logged run names (those that import here; the parts of others go unchecked)."""
    from harness.errors import PluginError
    from harness.registry import Registry

    registry, tried = Registry(), set()

    def check(params: dict[str, str]) -> bool:
        for module in logged_modules(params):
            if module not in tried:
                tried.add(module)
                with contextlib.suppress(PluginError):
                    registry.load_module(module)
        return is_current(params, registry)

    return check


def logged_modules(params: dict[str, str]) -> list[str]:
    """The suite-local plugin modules a logged run imported."""
    try:
        modules = json.loads(params.get("plugins", "[]"))
    except ValueError:
        return []
    return [m for m in modules if isinstance(m, str)] if isinstance(modules, list) else []


def why(spec: RunSpec, runs: list[Any], rerun: bool) -> str:
    """Why ``spec`` trains, given the experiment's logged runs (oldest first)."""
    from harness.tracking import COMPLETED, RESUMABLE, flatten

    key = spec.run_key
    same = [r.data.tags.get("status") for r in runs if r.data.tags.get("run_key") == key]
    if any(s in COMPLETED for s in same):
        return "--rerun" if rerun else "finished meanwhile"
    if any(s in RESUMABLE for s in same):
        return "resuming an unfinished run"
    if same:
        return "retrying a failed run"
    strategy = [r for r in runs if r.data.tags.get("strategy") == spec.strategy]
    setting = [r for r in strategy if r.data.tags.get("setting", "") == (spec.setting or "")]
    mine = [r for r in setting if r.data.tags.get("seed") == str(spec.seed)]
    if not mine:
        return "new seed" if setting else "new setting" if strategy else "new strategy"
    done = [r for r in mine if r.data.tags.get("status") in COMPLETED]
    before = (done or mine)[-1].data.params
    now = {k: v[:6000] for k, v in flatten(spec.config).items()}
    logged = {k for k in before if k.startswith(PREFIX)}
    if not logged:
        return "run before code identity was recorded"
    changed = [
        k[len(PREFIX) :].replace(".", " ", 1)
        for k in sorted(logged & set(now))  # parts swapped for others: a settings change
        if now[k] != before[k]
    ]
    if changed:
        return f"{', '.join(changed)} changed"
    old = before.get("harness_version")
    if old is not None and old != harness.__version__:
        return f"harness {old} -> {harness.__version__}"
    settings = [k for k in now if not k.startswith(PREFIX) and before.get(k) != now[k]]
    if settings:
        more = ", ..." if len(settings) > 2 else ""
        return f"settings changed ({', '.join(settings[:2])}{more})"
    return "run key changed"


def plan(specs: list[RunSpec], trained: list[RunSpec], runs: list[Any], rerun: set[str]) -> str:
    """One line: how many runs train and why, and how many are skipped."""
    reasons = Counter(why(s, runs, s.strategy in rerun) for s in trained)
    skipped = len(specs) - len(trained)
    if not trained:
        return f"all {len(specs)} runs finished: skipped (--rerun STRATEGY|all retrains them)"
    text = ", ".join(f"{reason} ({n})" for reason, n in reasons.most_common())
    tail = f"; {skipped} finished, skipped" if skipped else ""
    return f"training {len(trained)} of {len(specs)} runs: {text}{tail}"


def strategy_set(option: str | None, strategies: Iterable[str], flag: str) -> set[str]:
    """``--rerun``/``--only`` ``a,b`` or ``all`` -> the strategy names; an unknown one is an
    error naming ``flag``, with the closest name."""
    from harness.errors import HarnessError
    from harness.registry import _suggest

    known = list(strategies)
    if not option:
        return set()
    names = [n.strip() for n in option.split(",") if n.strip()]
    if names == ["all"]:
        return set(known)
    for name in names:
        if name not in known:
            raise HarnessError(f"{flag}: no strategy {name!r} in the suite{_suggest(name, known)}")
    return set(names)
