"""The plugin manager: loads entry points and suite-local modules, and looks parts up."""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any

import pluggy
from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError

from harness.core import hookspecs
from harness.core.errors import HarnessError, PluginError, SuiteError
from harness.core.identity import PartIdentity, part_identity
from harness.core.parts import KINDS

ENTRY_POINT_GROUP = "harness"
HOOKS = {
    "loss": "register_losses",
    "constraint": "register_constraints",
    "architecture": "register_architectures",
    "dataset": "register_datasets",
    "metric": "register_metrics",
}


@dataclass(frozen=True)
class Param:
    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class PartInfo:
    kind: str
    name: str
    cls: type
    source: str
    dist: str | None = None  # the distribution whose entry point registered it

    @cached_property
    def identity(self) -> PartIdentity:
        """Distribution, version, module and module source hash: part of every run key."""
        return part_identity(self.cls, self.dist)

    @property
    def params(self) -> list[Param]:
        signature = inspect.signature(self.cls.__init__)
        hints = _type_hints(self.cls.__init__)
        return [
            Param(p.name, hints.get(p.name, Any), p.default)
            for p in list(signature.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.cls) or ""
        return doc.split("\n\n")[0].replace("\n", " ")


def _type_hints(func) -> dict[str, Any]:
    try:
        import typing

        return typing.get_type_hints(func, include_extras=True)  # keep Annotated bounds
    except Exception:  # unresolvable forward references: fall back to no type checks
        return {}


class Registry:
    """Every registered part, by kind and name, with the package it came from."""

    def __init__(self, modules: list[str] | tuple[str, ...] = ()):
        self._pm = pluggy.PluginManager("harness")
        self._pm.add_hookspecs(hookspecs)
        self._sources: dict[str, str] = {}
        self._parts: dict[str, dict[str, PartInfo]] | None = None
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "?"
            try:
                module = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: a plugin never ends the process
                message = f"plugin entry point {ep.name!r} of {dist} failed: {_describe(exc)}"
                raise PluginError(message) from None
            self._add(module, f"{dist}:{ep.name}", dist)
        for name in modules:
            self.load_module(name)

    def _add(self, plugin: object, plugin_name: str, source: str) -> None:
        if self._pm.is_registered(plugin):
            return
        self._pm.register(plugin, name=plugin_name)
        self._sources[plugin_name] = source
        self._parts = None

    def load_module(self, name: str) -> None:
        """Register an importable module of hook implementations (a suite's ``plugins:``)."""
        try:
            module = importlib.import_module(name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # any failure inside a plugin's import is the plugin's
            message = f"cannot import plugin module {name!r}: {_describe(exc)}"
            raise PluginError(message) from None
        self._add(module, f"module:{name}", name)

    @property
    def parts(self) -> dict[str, dict[str, PartInfo]]:
        if self._parts is None:
            self._parts = {kind: {} for kind in KINDS}
            for kind, hook in HOOKS.items():
                for impl in getattr(self._pm.hook, hook).get_hookimpls():
                    source = self._sources.get(impl.plugin_name, impl.plugin_name)
                    local = impl.plugin_name.startswith("module:") or source == "?"
                    try:
                        impl.function(register=self._registrar(kind, source, not local))
                    except (KeyboardInterrupt, PluginError):
                        self._parts = None
                        raise
                    except BaseException as exc:
                        self._parts = None
                        raise PluginError(f"{source}: {hook} failed: {_describe(exc)}") from None
        return self._parts

    def _registrar(self, kind: str, source: str, from_dist: bool = False):
        def register(name: str, part: type) -> None:
            base = KINDS[kind]
            if not (isinstance(part, type) and issubclass(part, base)):
                raise PluginError(
                    f"{source} registered {kind} {name!r} as {part!r}, "
                    f"which is not a subclass of harness.parts.{base.__name__}"
                )
            known = self._parts[kind].get(name)
            if known is not None:
                raise PluginError(
                    f"{kind} {name!r} is registered twice: by {known.source} "
                    f"({known.cls.__qualname__}) and by {source} ({part.__qualname__})"
                )
            dist = source if from_dist else None
            self._parts[kind][name] = PartInfo(kind, name, part, source, dist)

        return register

    def get(self, kind: str, name: str, *, field: str | None = None) -> PartInfo:
        """Look a part up; an unknown name raises a SuiteError with close matches."""
        known = self.parts[kind]
        if name in known:
            return known[name]
        raise SuiteError(f"unknown {kind} {name!r}{suggest(name, known)}", field=field)

    def directions(self) -> dict[str, str]:
        """Which way is better ("max" or "min") for every metric name a registered metric
        reports."""
        out: dict[str, str] = {}
        for info in self.parts["metric"].values():
            out.update(info.cls.directions)
        return out

    def create(self, kind: str, name: str, params: dict[str, Any], *, field: str | None = None):
        """Instantiate a part with validated parameters."""
        info = self.get(kind, name, field=field)
        params = validate_params(info, params, field=field)
        try:
            return info.cls(**params)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a part rejecting its parameters is a suite error
            raise SuiteError(f"{kind} {name!r}: {_describe_part(exc)}", field=field) from None


def _describe(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    if isinstance(exc, ModuleNotFoundError | ImportError) and lines:
        return lines[0]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _describe_part(exc: BaseException) -> str:
    """A part's own error as it reads (ValueError: its message); anything else with its type."""
    if isinstance(exc, ValueError | TypeError | HarnessError) and str(exc).strip():
        return str(exc).strip().splitlines()[0]
    return _describe(exc)


def suggest(name: str, options) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options``, else the known names."""
    close = difflib.get_close_matches(str(name), list(options), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; known: {', '.join(sorted(options))}" if options else ""


def validate_params(info: PartInfo, params: dict[str, Any], *, field: str | None) -> dict:
    """Check names and types of a part's parameters against its constructor signature."""
    by_name = {p.name: p for p in info.params}
    out = {}
    for key, value in params.items():
        where = f"{field}.{key}" if field else key
        if key not in by_name:
            raise SuiteError(
                f"{info.kind} {info.name!r} has no parameter {key!r}{suggest(key, by_name)}",
                field=where,
            )
        try:
            out[key] = _adapter(by_name[key].annotation).validate_python(value, strict=False)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise SuiteError(f"{error['msg']} (got {value!r})", field=where) from None
        if _bool_coerced(value, out[key]):
            raise SuiteError(f"expected a number, got a boolean ({value!r})", field=where)
    missing = [p.name for p in info.params if p.required and p.name not in params]
    if missing:
        raise SuiteError(f"{info.kind} {info.name!r} needs parameter {missing[0]!r}", field=field)
    return out


def _adapter(annotation: Any) -> TypeAdapter:
    """A validator that rejects NaN and ±inf for floats unless the part declares it accepts
    them: ``Annotated[float, pydantic.AllowInfNan()]`` or ``Field(allow_inf_nan=True)``."""
    try:
        return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False))
    except PydanticUserError:  # a model or dataclass annotation carries its own config
        return TypeAdapter(annotation)


def _bool_coerced(value: Any, result: Any) -> bool:
    """Whether validation turned a YAML boolean into a number (``c: true`` as c=1)."""
    if isinstance(value, bool):
        return not isinstance(result, bool)
    if isinstance(value, list | tuple) and isinstance(result, list | tuple):
        return any(_bool_coerced(v, r) for v, r in zip(value, result, strict=False))
    if isinstance(value, dict) and isinstance(result, dict):
        return any(_bool_coerced(v, result[k]) for k, v in value.items() if k in result)
    return False
