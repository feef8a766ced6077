"""Hyperparameter sweeps: a suite's or a strategy's ``sweep:`` block -> named settings.

A block may hold any of three kinds, combined as a cartesian product (settings × grid × random):

- ``settings: {A: {optimizer.lr: 1e-4, n_critic: 5}, B: {...}}`` — named settings;
- ``grid: {optimizer.lr: [1e-4, 1e-3], n_critic: [1, 5]}`` — every combination of the lists;
- ``random: {n: 16, seed: 0, params: {optimizer.lr: {loguniform: [1e-5, 1e-2]}}}`` — ``n``
  settings drawn from distributions (``loguniform``, ``uniform``, ``randint`` (inclusive),
  ``choice``), reproducible from ``seed``; floats are rounded to 4 significant digits.

A parameter is a dotted path into a run: ``optimizer.lr``, ``optimizer.betas``,
``optimizer.name``, ``n_critic`` (= ``train.n_critic``), ``train.*``, ``eval.*``,
``constraint.c`` (a constraint parameter; ``constraint.name`` swaps the part), likewise
``loss.*``, ``architecture.*`` and ``dataset.*``. A value may also be written nested:
``{optimizer: {lr: 1e-4}}`` is ``{optimizer.lr: 1e-4}``.
"""

from __future__ import annotations

import difflib
import itertools
import math
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from harness.core.errors import SuiteError

SettingName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=64)]
DIRECT = ("train", "eval", "optimizer")  # their fields are the path's second part
PARTS = ("loss", "constraint", "dataset", "architecture")  # second part: a part parameter
EXAMPLES = ["optimizer.lr", "optimizer.betas", "optimizer.name", "n_critic", "train.steps"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Distribution(_Strict):
    """Exactly one of: ``loguniform: [low, high]``, ``uniform: [low, high]``,
    ``randint: [low, high]`` (both ends included), ``choice: [v1, v2, ...]``."""

    loguniform: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] | None = None
    uniform: tuple[float, float] | None = None
    randint: (
        tuple[
            Annotated[int, Field(ge=-(2**62), le=2**62)],
            Annotated[int, Field(ge=-(2**62), le=2**62)],
        ]
        | None
    ) = None
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [k for k in ("loguniform", "uniform", "randint", "choice") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of loguniform, uniform, randint, choice")
        low_high = getattr(self, given[0])
        if given[0] != "choice" and low_high[0] > low_high[1]:
            raise ValueError(f"{given[0]}: low must not exceed high")
        return self

    def sample(self, rng: np.random.Generator) -> Any:
        if self.loguniform:
            low, high = self.loguniform
            return _round(math.exp(rng.uniform(math.log(low), math.log(high))))
        if self.uniform:
            return _round(rng.uniform(*self.uniform))
        if self.randint:
            return int(rng.integers(self.randint[0], self.randint[1] + 1))
        return self.choice[int(rng.integers(len(self.choice)))]


class RandomSweep(_Strict):
    n: Annotated[int, Field(gt=0, le=100_000)]
    seed: Annotated[int, Field(ge=0)] = 0
    params: dict[str, Distribution] = Field(min_length=1)


class SweepConfig(_Strict):
    """A ``sweep:`` block (see the module docstring)."""

    settings: dict[SettingName, dict[str, Any]] = Field(default_factory=dict)
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    random: RandomSweep | None = None

    @field_validator("settings", mode="before")
    @classmethod
    def _drop_removed(cls, value: Any) -> Any:
        """``C: null`` removes a setting (a profile merged over the suite can only do that)."""
        return (
            {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value
        )

    @property
    def size(self) -> int:
        """Settings it expands to, computed without expanding."""
        size = max(1, len(self.settings)) * math.prod(len(v) for v in self.grid.values())
        return size * (self.random.n if self.random else 1)


@dataclass(frozen=True)
class Setting:
    """One setting: its id, its values by dotted path, and where each value was written
    (``sweep.settings.D``), so an error names the setting and the field."""

    id: str
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{optimizer: {lr: 1}}`` -> ``{"optimizer.lr": 1}`` (dotted keys are kept). A value
    given twice, nested and dotted (``optimizer: {lr: 1}`` beside ``optimizer.lr: 2``), or
    under both names of one parameter (``n_critic`` and ``train.n_critic``), is a ValueError."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        found = flat(value, f"{path}.") if isinstance(value, dict) and value else {path: value}
        for inner, item in found.items():
            twin = next((p for p in out if canonical(p) == canonical(inner)), None)
            if twin is not None:
                spelt = f"as {twin} and {inner}" if twin != inner else "nested and dotted"
                raise ValueError(f"{canonical(inner)} is given twice ({spelt})")
            out[inner] = item
    return out


def canonical(path: str) -> str:
    """One name per sweepable parameter: ``n_critic`` is ``train.n_critic``."""
    return "train.n_critic" if path == "n_critic" else path


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "(" + ",".join(_short(v) for v in value) + ")"
    return str(value)


def expand(sweep: SweepConfig, where: str = "sweep") -> list[Setting]:
    """Every setting of ``sweep``, in a fixed order; ``where`` locates the block in errors."""
    parts: list[list[Setting]] = []
    if sweep.settings:
        named = []
        for name, values in sweep.settings.items():
            if not isinstance(values, dict):
                raise SuiteError("a setting must be a mapping", field=f"{where}.settings.{name}")
            try:
                values = flat(values)
            except ValueError as exc:
                raise SuiteError(str(exc), field=f"{where}.settings.{name}") from None
            for path in values:
                check_path(path, f"{where}.settings.{name}.{path}")
            named.append(Setting(name, values, dict.fromkeys(values, f"{where}.settings.{name}")))
        parts.append(named)
    if sweep.grid:
        paths = list(sweep.grid)
        try:
            flat(dict.fromkeys(paths))
        except ValueError as exc:
            raise SuiteError(str(exc), field=f"{where}.grid") from None
        for path in paths:
            check_path(path, f"{where}.grid.{path}")
        last = [p.rsplit(".", 1)[-1] for p in paths]
        labels = last if len(set(last)) == len(last) else paths
        combos = list(itertools.product(*sweep.grid.values()))
        parts.append(
            [
                Setting(
                    ",".join(f"{label}={_short(v)}" for label, v in zip(labels, c, strict=True)),
                    dict(zip(paths, c, strict=True)),
                    dict.fromkeys(paths, f"{where}.grid"),
                )
                for c in combos
            ]
        )
    if sweep.random:
        try:
            flat(dict.fromkeys(sweep.random.params))
        except ValueError as exc:
            raise SuiteError(str(exc), field=f"{where}.random.params") from None
        for path in sweep.random.params:
            check_path(path, f"{where}.random.params.{path}")
        rng = np.random.default_rng(sweep.random.seed)
        width = len(str(sweep.random.n - 1))
        drawn = []
        for i in range(sweep.random.n):
            values = {p: d.sample(rng) for p, d in sweep.random.params.items()}
            source = f"{where}.random.r{i:0{width}d}"
            drawn.append(Setting(f"r{i:0{width}d}", values, dict.fromkeys(values, source)))
        parts.append(drawn)
    settings = []
    for combo in itertools.product(*parts):
        values, sources = {}, {}
        for part in combo:
            for path in part.values:
                if any(canonical(p) == canonical(path) for p in values):
                    raise SuiteError(
                        f"{canonical(path)} is set by two kinds of sweep (settings, grid, random)",
                        field=f"{where}",
                    )
            values.update(part.values)
            sources.update(part.sources)
        settings.append(Setting("/".join(p.id for p in combo), values, sources))
    ids = [s.id for s in settings]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise SuiteError(f"two settings are both named {duplicate!r}", field=where)
    return settings


def check_path(path: str, field: str) -> None:
    """A sweepable dotted path, or an error with a close match."""
    head, _, rest = path.partition(".")
    ok = path == "n_critic" or (head in DIRECT + PARTS and rest and "." not in rest)
    if not ok:
        close = difflib.get_close_matches(path, EXAMPLES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SuiteError(
            f"cannot sweep {path!r}{hint}: use optimizer.FIELD, n_critic, train.FIELD, "
            "eval.FIELD, or loss|constraint|dataset|architecture.PARAM",
            field=field,
        )


def apply(pieces: dict[str, dict], values: dict[str, Any]) -> dict[str, dict]:
    """``pieces`` (loss, constraint, dataset, architecture, train, eval, optimizer as plain
    dicts) with a setting's values written in; returns new dicts."""
    out = {
        k: {**v, "params": dict(v["params"])} if "params" in v else dict(v)
        for k, v in pieces.items()
    }
    for path, value in values.items():
        *keys, last = _target(path)
        node = out
        for key in keys:
            node = node[key]
        node[last] = value
    return out


def _target(path: str) -> tuple[str, ...]:
    head, rest = ("train", "n_critic") if path == "n_critic" else path.split(".", 1)
    if head in DIRECT or rest == "name" or (head == "architecture" and rest == "z_dim"):
        return head, rest
    return head, "params", rest


def resolved_values(parts: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The values a setting's paths took once validated (``"1e-4"`` in YAML is the float)."""
    out = {}
    for path in values:
        node: Any = {k: v.model_dump(mode="json") for k, v in parts.items()}
        for key in _target(path):
            node = node[key]
        out[path] = node
    return out


def source_of(setting: Setting, error_field: str | None) -> str | None:
    """The swept path behind an error's relative field (``constraint.c``, ``train.n_critic``),
    located where the setting wrote it; None when the error is not about a swept value."""
    if not error_field:
        return None
    for path, where in setting.sources.items():
        canonical = "train.n_critic" if path == "n_critic" else path
        if error_field == canonical or error_field.startswith(f"{canonical}."):
            return f"{where}.{path}"
    for path, where in setting.sources.items():  # an error about the part a value went into
        if path.startswith(f"{error_field}."):
            return f"{where}.{path}"
    return None
