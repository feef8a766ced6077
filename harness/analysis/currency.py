"""Whether a stored run is current: made by the harness version and part code installed now
(:mod:`harness.core.identity`). Tables and reports keep to current runs unless asked for all."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from harness.core.errors import PluginError
from harness.core.registry import Registry
from harness.core.version import __version__
from harness.run.store import IDENTITY, PLUGINS, VERSION


def is_current(params: dict[str, str], registry: Registry) -> bool:
    """Whether a logged run (its params) was made by the harness version and part code
    installed now. A run logged without identity is not; a part no longer registered cannot
    be checked and does not count against it."""
    if params.get(VERSION, __version__) != __version__:
        return False
    logged = {k[len(IDENTITY) :]: v for k, v in params.items() if k.startswith(IDENTITY)}
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
        modules = json.loads(params.get(PLUGINS, "[]"))
    except ValueError:
        return []
    return [m for m in modules if isinstance(m, str)] if isinstance(modules, list) else []
