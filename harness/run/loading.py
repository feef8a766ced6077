"""Suite files -> validated, fully-resolved runs (one per strategy × setting × seed).

:func:`load_suite` reads a file (:mod:`harness.run.suite_file`), applies a profile and the
command line's overrides, validates it against :class:`harness.core.spec.SuiteConfig`, and
:func:`resolve` checks every part and parameter by constructing it once before expanding the
grid. Nothing here trains or imports torch: ``harness validate`` is this module.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.core.errors import HarnessError, SuiteError
from harness.core.parts import Constraint
from harness.core.registry import Registry
from harness.core.spec import (
    ArchitectureConfig,
    EvalConfig,
    OptimizerConfig,
    PartRef,
    RunSpec,
    StrategyConfig,
    Suite,
    SuiteConfig,
    TrainConfig,
)
from harness.core.sweeps import Setting, SweepConfig, apply, expand, resolved_values, source_of
from harness.run.suite_file import read_yaml

log = logging.getLogger("harness")

MAX_RUNS = 500  # a suite expanding to more runs needs --max-runs: guards oversized sweeps
MAX_RUNS_LIMIT = 100_000  # the most --max-runs allows: every run is resolved in memory
PIECES = {  # what a strategy resolves to, and the model each piece validates against
    "dataset": PartRef,
    "architecture": ArchitectureConfig,
    "train": TrainConfig,
    "loss": PartRef,
    "constraint": PartRef,
    "optimizer": OptimizerConfig,
    "eval": EvalConfig,
}


class MissingData(SuiteError):
    """A dataset's files are not where it looks (its ``check`` failed): the suite itself may be
    sound, and the data may live on another machine."""


def validate_profiles(
    path: str | Path, *, data_dir: Path | None = None, max_runs: int | None = MAX_RUNS
) -> tuple[Suite, dict[str, Suite | str]]:
    """The suite as written, and under each of its profiles (``harness validate`` without
    ``-p``). An error in a profile names it; a profile whose data is not on this machine maps to
    the reason instead, unless ``data_dir`` was given (then it is an error too)."""
    suite, registry = load_suite(path, data_dir=data_dir, max_runs=max_runs)
    profiles: dict[str, Suite | str] = {}
    for name in suite.config.profiles:
        try:
            profiles[name], _ = load_suite(
                path, profile=name, registry=registry, max_runs=max_runs, data_dir=data_dir
            )
        except MissingData as exc:
            if data_dir is not None:
                raise SuiteError(f"{exc.message} (profile {name!r})", file=exc.file) from None
            profiles[name] = exc.message
        except SuiteError as exc:
            message = f"{exc.message} (profile {name!r})"
            raise SuiteError(message, file=exc.file, field=exc.field) from None
    return suite, profiles


def load_suite(
    path: str | Path,
    *,
    profile: str | None = None,
    seeds: list[int] | None = None,
    precision: str | None = None,
    registry: Registry | None = None,
    max_runs: int | None = MAX_RUNS,
    data_dir: Path | None = None,
) -> tuple[Suite, Registry]:
    """Read, validate and resolve a suite; every plugin name and parameter is checked here,
    before any training starts. ``seeds`` and ``precision`` override the suite's; a suite
    expanding to more than ``max_runs`` runs (None: no limit) is refused. The dataset checks
    that its files are under ``data_dir``."""
    path = Path(path)
    text, raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SuiteError("a suite must be a YAML mapping", file=str(path))
    raw = with_profile(raw, profile, str(path))
    if seeds is not None:
        raw = {**raw, "seeds": seeds}
    if precision is not None:
        raw = merge(raw, {"train": {"precision": precision}})
    try:
        config = SuiteConfig.model_validate(raw)
    except ValidationError as exc:
        message, field = _first_error(exc)
        raise SuiteError(message, file=str(path), field=field) from None
    check_size(config, max_runs, str(path))
    try:
        registry = registry or Registry()
        for module in config.plugins:
            registry.load_module(module)
        runs = resolve(config, registry, data_dir=data_dir)
        runs = [r.model_copy(update={"identity": code_identity(r, registry)}) for r in runs]
    except SuiteError as exc:
        exc.file = str(path)
        raise
    except HarnessError as exc:
        raise SuiteError(str(exc), file=str(path)) from None
    return Suite(path=str(path), profile=profile, config=config, text=text, runs=runs), registry


def resolve(
    config: SuiteConfig, registry: Registry, *, data_dir: Path | None = None
) -> list[RunSpec]:
    """Check every part and parameter by constructing it once, and that the dataset finds its
    data under ``data_dir``; then expand strategies × settings × seeds."""
    data, arch = config.dataset, config.architecture
    check_data(registry.create("dataset", data.name, data.params, field="dataset"), data, data_dir)
    registry.create("architecture", arch.name, arch.params, field="architecture")
    metrics = config.metrics or [PartRef(name=n) for n in default_metrics(registry)]
    for i, metric in enumerate(metrics):
        registry.create("metric", metric.name, metric.params, field=f"metrics.{i}")
    runs, coupled = [], set()
    for name, strategy in config.strategies.items():
        where = f"strategies.{name}"
        base = strategy_pieces(config, strategy, registry, where)
        for setting, parts in variants(config, name, strategy, base, registry):
            check_batches(registry, parts, where)
            check_shapes(registry, parts)
            coupled.add(coupled_penalty(registry, parts, where))
            if parts["dataset"] != config.dataset:  # a sweep changed it: check its data too
                swept = parts["dataset"]
                built = registry.create("dataset", swept.name, swept.params, field="dataset")
                check_data(built, swept, data_dir)
            runs += [
                RunSpec(
                    suite=config.name,
                    strategy=name,
                    seed=seed,
                    **parts,
                    metrics=metrics,
                    plugins=config.plugins,
                    setting=setting and setting.id,
                    sweep=setting and resolved_values(parts, setting.values),
                )
                for seed in config.seeds
            ]
    for warning in sorted(coupled - {None}):
        log.warning("%s", warning)
    return runs


STRATEGY_TRAIN = ("n_critic", "batch_size", "generator_steps", "updates")  # a strategy's own


def strategy_pieces(
    config: SuiteConfig, strategy: StrategyConfig, registry: Registry, where: str
) -> dict[str, Any]:
    """A strategy's resolved pieces (see :data:`PIECES`) before any sweep: its loss and
    constraint constructed once, its optimiser (the strategy's, else the suite's, else the
    constraint's paper default), its own critic and generator steps, update order, batch size
    and architecture parameters."""
    loss, constraint = strategy.loss, strategy.constraint
    registry.create("loss", loss.name, loss.params, field=f"{where}.loss")
    built = registry.create(
        "constraint", constraint.name, constraint.params, field=f"{where}.constraint"
    )
    optimizer = strategy.optimizer or config.optimizer or OptimizerConfig(**built.default_optimizer)
    own = {k: getattr(strategy, k) for k in STRATEGY_TRAIN if getattr(strategy, k) is not None}
    train = config.train.model_copy(update=own)
    if train.generator_steps == 0 and train.updates == "simultaneous":
        raise SuiteError(
            "generator_steps 0 holds the generator fixed, which a simultaneous update cannot "
            "do: use updates: alternating",
            field=f"{where}.updates" if "updates" in own else "train.updates",
        )
    arch = config.architecture
    if strategy.architecture:
        arch = ArchitectureConfig.model_validate(
            {"name": arch.name, "z_dim": arch.z_dim, **arch.params, **strategy.architecture}
        )
        registry.create("architecture", arch.name, arch.params, field=f"{where}.architecture")
    return {
        "dataset": config.dataset,
        "architecture": arch,
        "train": train,
        "loss": loss,
        "constraint": constraint,
        "optimizer": optimizer,
        "eval": config.eval,
    }


def variants(
    config: SuiteConfig, name: str, strategy: StrategyConfig, base: dict, registry: Registry
) -> list[tuple[Setting | None, dict]]:
    """The strategy's pieces under each setting of its sweep (the strategy's own, else the
    suite's), or once as they are when nothing is swept."""
    own = strategy.sweep is not None
    where = f"strategies.{name}"
    sweep, at = (strategy.sweep, f"{where}.sweep") if own else (config.sweep, "sweep")
    if not sweeps(sweep):
        return [(None, base)]
    return [(s, swept(base, s, registry, name)) for s in expand(sweep, at)]


def check_batches(registry: Registry, parts: dict, field: str) -> None:
    """Training batches and evaluation samples must be multiples of the architecture's
    ``batch_multiple`` (a critic packing k samples scores them k at a time)."""
    arch = parts["architecture"]
    built = registry.create("architecture", arch.name, arch.params, field=field)
    k = built.batch_multiple
    sizes = {"train.batch_size": parts["train"].batch_size, "eval.samples": parts["eval"].samples}
    for what, n in sizes.items():
        if n % k:
            raise SuiteError(
                f"{what} is {n}, not a multiple of {k}: architecture {arch.name!r} "
                f"{arch.params} scores batches {k} samples at a time",
                field=field,
            )


def coupled_penalty(registry: Registry, parts: dict, field: str) -> str | None:
    """A warning when a penalty (per-sample input gradients) meets a critic that couples the
    samples of a batch (batch norm): the penalty then mixes the samples' gradients."""
    arch, constraint = parts["architecture"], parts["constraint"]
    built = registry.create("architecture", arch.name, arch.params, field=field)
    penalty = registry.create("constraint", constraint.name, constraint.params, field=field)
    if built.per_sample_critic or type(penalty).penalty is Constraint.penalty:
        return None
    return (
        f"{field}: constraint {constraint.name!r} penalises per-sample gradients, but "
        f"architecture {arch.name!r}'s critic couples the samples of a batch (batch norm)"
    )


def check_shapes(registry: Registry, parts: dict) -> None:
    """The architecture accepts the dataset's sample shape, when the dataset declares it."""
    data, arch = parts["dataset"], parts["architecture"]
    shape = registry.create("dataset", data.name, data.params, field="dataset").shape
    if shape is None:
        return
    built = registry.create("architecture", arch.name, arch.params, field="architecture")
    try:
        built.check(tuple(shape))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a plugin's check failing is a suite error, never a crash
        message = f"architecture {arch.name!r} cannot train on dataset {data.name!r}: {exc}"
        raise SuiteError(message, field="architecture") from None


def check_data(dataset, ref: PartRef, data_dir: Path | None) -> None:
    """The dataset's own check that its data is there (``Dataset.check``), as a SuiteError."""
    try:
        if data_dir is not None and not Path(data_dir).is_dir():
            raise SuiteError(f"--data-dir {data_dir} is not a directory", field="dataset")
    except OSError as exc:
        raise SuiteError(f"--data-dir {data_dir}: {exc.strerror}", field="dataset") from None
    try:
        dataset.check(data_dir)
    except HarnessError as exc:
        raise MissingData(str(exc), field="dataset") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a plugin's check failing is a suite error, never a crash
        message = f"dataset {ref.name!r}: {type(exc).__name__}: {exc}"
        raise SuiteError(message, field="dataset") from None


def check_size(config: SuiteConfig, max_runs: int | None, file: str) -> None:
    """Refuse a suite expanding to more than ``max_runs`` runs (None: no limit), computed
    without expanding its sweeps, and a ``max_runs`` above :data:`MAX_RUNS_LIMIT`."""
    if max_runs is not None and not 1 <= max_runs <= MAX_RUNS_LIMIT:
        raise HarnessError(f"--max-runs {max_runs}: give 1 to {MAX_RUNS_LIMIT:,}")
    size = sweep_size(config)
    if max_runs is not None and size > max_runs:
        message = (
            f"expands to {size:,} runs (strategies × settings × seeds), more than --max-runs "
            f"{max_runs}: shrink the sweep or raise --max-runs"
        )
        raise SuiteError(message, file=file, field="sweep")


def sweep_size(config: SuiteConfig) -> int:
    """Runs the suite expands to, computed without expanding its sweeps."""
    total = 0
    for strategy in config.strategies.values():
        sweep = strategy.sweep if strategy.sweep is not None else config.sweep
        total += (sweep.size if sweeps(sweep) else 1) * len(config.seeds)
    return total


def sweeps(sweep: SweepConfig | None) -> bool:
    """A block that sweeps something (``sweep: {}`` in a strategy opts out of the suite's)."""
    return bool(sweep and (sweep.settings or sweep.grid or sweep.random))


def swept(base: dict, setting: Setting, registry: Registry, strategy: str) -> dict:
    """A strategy's resolved pieces with a setting's values written in, every changed part
    constructed once; an error names the setting and the swept field."""
    pieces = apply({k: v.model_dump(mode="json") for k, v in base.items()}, setting.values)
    try:
        parts = {}
        for key, model in PIECES.items():
            try:
                parts[key] = model.model_validate(pieces[key])
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join([key, *map(str, error["loc"])]) if error["loc"] else key
                raise SuiteError(error["msg"], field=_field(tuple(field.split(".")))) from None
        for kind in ("dataset", "architecture", "loss", "constraint"):
            if parts[kind] != base[kind]:
                registry.create(kind, parts[kind].name, parts[kind].params, field=kind)
    except SuiteError as exc:
        field = source_of(setting, exc.field)
        if field is None:
            first = next(iter(setting.sources.values()), "sweep")
            field = f"{first}.{exc.field}" if exc.field else first
        message = f"{exc.message} (setting {setting.id!r} of strategy {strategy!r})"
        raise SuiteError(message, field=field) from None
    return parts


def with_profile(raw: dict, profile: str | None, file: str) -> dict:
    """``raw`` with the named profile deep-merged over it; an unknown profile is an error with
    the closest name."""
    if profile is None:
        return raw
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict) or profile not in profiles:
        known = [str(p) for p in profiles] if isinstance(profiles, dict) else []
        close = difflib.get_close_matches(profile, known, n=1)
        hint = (
            f" (did you mean {close[0]!r}?)"
            if close
            else f"; known: {', '.join(known)}"
            if known
            else "; the suite has no profiles"
        )
        raise SuiteError(f"unknown profile {profile!r}{hint}", file=file, field="profiles")
    if not isinstance(profiles[profile], dict):
        raise SuiteError("a profile must be a mapping", file=file, field=f"profiles.{profile}")
    return merge(raw, profiles[profile])


def merge(base: dict, override: dict) -> dict:
    """``override`` deep-merged over ``base`` (mappings merge, anything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def code_identity(spec: RunSpec, registry: Registry) -> dict[str, str]:
    """``{"constraint.softclip": "dist==1.0 module sha256:...", ...}`` for every part of a run
    (see :mod:`harness.core.identity`): part of its run key."""
    parts = [
        ("dataset", spec.dataset.name),
        ("architecture", spec.architecture.name),
        ("loss", spec.loss.name),
        ("constraint", spec.constraint.name),
        *(("metric", m.name) for m in spec.metrics),
    ]
    return {f"{kind}.{name}": str(registry.get(kind, name).identity) for kind, name in parts}


def default_metrics(registry: Registry) -> list[str]:
    """Every registered default metric, when a suite does not choose."""
    return [name for name, info in registry.parts["metric"].items() if info.cls.default]


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """The error to report: an unknown key before the required field it probably misspells
    (``strategys`` → did you mean 'strategies'?), else pydantic's first."""
    errors = exc.errors()
    for error in errors:
        if error["type"] == "extra_forbidden":
            parent, key = error["loc"][:-1], str(error["loc"][-1])
            siblings = [e["loc"] for e in errors if e["type"] == "missing"]
            known = [str(loc[-1]) for loc in siblings if loc[:-1] == parent]
            if not parent:
                known += list(SuiteConfig.model_fields)
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                return f"unknown key {key!r} (did you mean {close[0]!r}?)", _field(error["loc"])
    return errors[0]["msg"], _field(errors[0]["loc"])


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-before[_shorthand()]",))
