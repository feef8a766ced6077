"""Part identity: where a part's code comes from, as its distribution, version, module and the
module's source hash.

A run's key covers the code of every part it uses (dataset, architecture, loss, constraint,
metrics): editing a plugin module, or installing another version of its package, makes that
module's runs new. The identities are logged as ``identity.KIND.NAME`` params, so a later
invocation can say *why* it trains a run (:mod:`harness.run.planning`), and tables can keep to
runs of the current code (:mod:`harness.analysis.currency`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version


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
