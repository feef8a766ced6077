"""Suite files: YAML -> validated, fully-resolved runs (one per strategy × seed)."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

import harness
from harness.errors import HarnessError, SuiteError
from harness.identity import code_identity
from harness.registry import Registry
from harness.sweeps import Setting, SweepConfig, apply, expand, resolved_values, source_of

MAX_YAML_NODES = 100_000  # after alias expansion: refuses "billion laughs" documents
MAX_RUNS = 500  # a suite expanding to more runs needs --max-runs: guards oversized sweeps
MAX_SUITE_BYTES = 10 * 2**20
NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,100}$"
NAME_RULE = "letters, digits and -_. only (1 to 100 of them)"


def _no_bool(value: Any) -> Any:
    """YAML's ``true`` is not the number 1: refuse booleans where numbers are declared."""
    if isinstance(value, bool):
        message = "expected a number, got a boolean ({value})"
        raise PydanticCustomError("no_bool", message, {"value": value})
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Real = Annotated[float, BeforeValidator(_no_bool)]
Module = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")]
Count = Annotated[Int, Field(gt=0, le=10**9)]


def _check_names(names: Any, what: str) -> Any:
    """Names that become run names, tags and terminal output: a safe character set only."""
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            message = "{what} name {name}: use " + NAME_RULE
            raise PydanticCustomError("bad_name", message, {"what": what, "name": repr(name)})
    return names


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PartRef(Strict):
    """A part and its parameters: ``spectral_norm`` or ``{name: weight_clip, c: 0.01}``."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "params" not in value:
            rest = {k: v for k, v in value.items() if k != "name"}
            return {"name": value.get("name"), "params": rest}
        return value


class ArchitectureConfig(PartRef):
    z_dim: Annotated[Int, Field(gt=0, le=2**16)] = 64

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        value = PartRef._shorthand.__func__(cls, value)
        if isinstance(value, dict) and "z_dim" in value.get("params", {}):
            params = dict(value["params"])
            value = {**value, "z_dim": params.pop("z_dim"), "params": params}
        return value


class TrainConfig(Strict):
    steps: Count = Field(description="generator steps")
    batch_size: Annotated[Int, Field(gt=0, le=2**20)] = 64
    n_critic: Annotated[Int, Field(gt=0, le=1000)] = 5
    log_every: Count = 50
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: autocast the forward passes (changes results: in the run key)"
    )


class OptimizerConfig(Strict):
    name: Literal["adam", "rmsprop", "sgd"]
    lr: Annotated[Real, Field(gt=0, le=10)]
    betas: tuple[Annotated[Real, Field(ge=0, lt=1)], Annotated[Real, Field(ge=0, lt=1)]] | None = (
        None
    )


class StrategyConfig(Strict):
    loss: PartRef
    constraint: PartRef = PartRef(name="none")
    optimizer: OptimizerConfig | None = None
    n_critic: Annotated[Int, Field(gt=0, le=1000)] | None = None
    batch_size: Annotated[Int, Field(gt=0, le=2**20)] | None = None
    architecture: dict[str, Any] = Field(  # e.g. PacGAN's {pack: 4} for this strategy only
        default_factory=dict, description="architecture parameters this strategy overrides"
    )
    sweep: SweepConfig | None = None  # replaces the suite's sweep for this strategy


class EvalConfig(Strict):
    every: Count = 500
    samples: Annotated[Int, Field(gt=0, le=10**7)] = 2500


class SuiteConfig(Strict):
    name: str
    description: str = ""
    dataset: PartRef
    architecture: ArchitectureConfig
    train: TrainConfig
    optimizer: OptimizerConfig | None = None  # every strategy's, over its paper default
    sweep: SweepConfig | None = None
    strategies: dict[str, StrategyConfig] = Field(min_length=1)
    seeds: list[Annotated[Int, Field(ge=0, lt=2**32)]] = Field(default=[0], min_length=1)
    eval: EvalConfig = EvalConfig()
    metrics: list[PartRef] = Field(default_factory=list)
    plugins: list[Module] = Field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("strategies", "profiles", mode="before")
    @classmethod
    def _safe_names(cls, value: Any, info) -> Any:
        what = {"strategies": "strategy", "profiles": "profile"}[info.field_name]
        return _check_names(value, what) if isinstance(value, dict) else value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return _check_names([name], "suite")[0]

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            message = "seeds must be unique: {repeated} repeated"
            raise PydanticCustomError("unique", message, {"repeated": repeated})
        return seeds


class RunSpec(BaseModel):
    """One fully-resolved (strategy, seed) run: everything training needs, and its key."""

    model_config = ConfigDict(frozen=True)

    suite: str
    strategy: str
    seed: int
    dataset: PartRef
    architecture: ArchitectureConfig
    train: TrainConfig
    loss: PartRef
    constraint: PartRef
    optimizer: OptimizerConfig
    eval: EvalConfig
    metrics: list[PartRef]
    plugins: list[str]
    setting: str | None = None  # a sweep's setting id, and its values by dotted path
    sweep: dict[str, Any] | None = None
    identity: dict[str, str] = Field(default_factory=dict)  # each part's code: harness.identity

    @property
    def config(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def run_key(self) -> str:
        config = self.config
        if config["train"]["precision"] == "fp32":  # the default: keys made before it existed
            del config["train"]["precision"]  # stay valid, so finished runs are still skipped
        for name in ("setting", "sweep"):  # likewise for runs outside a sweep
            if config[name] is None:
                del config[name]
        if not config["identity"]:  # a spec built without a registry
            del config["identity"]
        payload = json.dumps({**config, "harness": harness.__version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class Suite(BaseModel):
    """A validated suite: its config, the profile applied, the raw text and its runs."""

    path: str
    profile: str | None
    config: SuiteConfig
    text: str
    runs: list[RunSpec]


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


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


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes the document would have with every alias expanded, without expanding it."""
    if id(node) not in memo:
        memo[id(node)] = 1  # guards recursive aliases
        if isinstance(node, yaml.SequenceNode):
            memo[id(node)] += sum(_expanded_size(n, memo) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[id(node)] += sum(
                _expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value
            )
    return memo[id(node)]


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing a key repeated in one mapping (YAML leaves it undefined and
    PyYAML keeps the last one silently). Keys brought in by a ``<<`` merge may be overridden."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                except TypeError:  # unhashable: the base class says so
                    continue
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_binary(self, node):
        raise yaml.constructor.ConstructorError(
            None, None, "!!binary values have no place in a suite", node.start_mark
        )


_Loader.add_constructor("tag:yaml.org,2002:binary", _Loader.construct_yaml_binary)


def read_yaml(path: Path) -> tuple[str, Any]:
    """Read a YAML file with the safe loader only, refusing anything but a regular file of at
    most MAX_SUITE_BYTES, alias bombs, deep nesting and repeated keys."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SuiteError("no such file", file=str(path)) from None
    except (OSError, ValueError) as exc:
        raise SuiteError(f"cannot read: {exc}", file=str(path)) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise SuiteError(f"{kind}: a suite is a YAML file", file=str(path))
    if info.st_size > MAX_SUITE_BYTES:
        message = f"{info.st_size:,} bytes: a suite file is at most {MAX_SUITE_BYTES:,}"
        raise SuiteError(message, file=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read: {exc}", file=str(path)) from None
    try:
        return text, _safe_load(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"invalid YAML: {problem}", file=str(path), field=where) from None
    except RecursionError:
        raise SuiteError("YAML nested too deeply", file=str(path)) from None


def _safe_load(text: str, file: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            message = f"more than {MAX_YAML_NODES:,} YAML nodes once aliases are expanded"
            raise SuiteError(message, file=file)
        return loader.construct_document(node)
    finally:
        loader.dispose()


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
    if profile is not None:
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
            raise SuiteError(f"unknown profile {profile!r}{hint}", file=str(path), field="profiles")
        if not isinstance(profiles[profile], dict):
            raise SuiteError(
                "a profile must be a mapping", file=str(path), field=f"profiles.{profile}"
            )
        raw = _merge(raw, profiles[profile])
    if seeds is not None:
        raw = {**raw, "seeds": seeds}
    if precision is not None:
        raw = _merge(raw, {"train": {"precision": precision}})
    try:
        config = SuiteConfig.model_validate(raw)
    except ValidationError as exc:
        message, field = _first_error(exc)
        raise SuiteError(message, file=str(path), field=field) from None
    size = sweep_size(config)
    if max_runs is not None and size > max_runs:
        message = (
            f"expands to {size:,} runs (strategies × settings × seeds), more than --max-runs "
            f"{max_runs}: shrink the sweep or raise --max-runs"
        )
        raise SuiteError(message, file=str(path), field="sweep")
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
    data under ``data_dir``; then expand the grid."""
    data = config.dataset
    check_data(registry.create("dataset", data.name, data.params, field="dataset"), data, data_dir)
    arch = config.architecture
    registry.create("architecture", arch.name, arch.params, field="architecture")
    metrics = config.metrics or [PartRef(name=n) for n in default_metrics(registry)]
    for i, metric in enumerate(metrics):
        registry.create("metric", metric.name, metric.params, field=f"metrics.{i}")
    runs = []
    for name, strategy in config.strategies.items():
        where = f"strategies.{name}"
        registry.create("loss", strategy.loss.name, strategy.loss.params, field=f"{where}.loss")
        constraint = registry.create(
            "constraint",
            strategy.constraint.name,
            strategy.constraint.params,
            field=f"{where}.constraint",
        )
        optimizer = (
            strategy.optimizer
            or config.optimizer
            or OptimizerConfig(**constraint.default_optimizer)
        )
        train = config.train
        if strategy.n_critic is not None:
            train = train.model_copy(update={"n_critic": strategy.n_critic})
        if strategy.batch_size is not None:
            train = train.model_copy(update={"batch_size": strategy.batch_size})
        own_arch = arch
        if strategy.architecture:
            own_arch = ArchitectureConfig.model_validate(
                {"name": arch.name, "z_dim": arch.z_dim, **arch.params, **strategy.architecture}
            )
            registry.create(
                "architecture", own_arch.name, own_arch.params, field=f"{where}.architecture"
            )
        base = {
            "dataset": config.dataset,
            "architecture": own_arch,
            "train": train,
            "loss": strategy.loss,
            "constraint": strategy.constraint,
            "optimizer": optimizer,
            "eval": config.eval,
        }
        variants: list[tuple[Setting | None, dict]] = [(None, base)]
        own = strategy.sweep is not None
        sweep, at = (strategy.sweep, f"{where}.sweep") if own else (config.sweep, "sweep")
        if _sweeps(sweep):
            variants = [(s, _swept(base, s, registry, name)) for s in expand(sweep, at)]
        for setting, parts in variants:
            check_batches(registry, parts, where)
            check_shapes(registry, parts)
            if parts["dataset"] != config.dataset:  # a sweep changed it: check its data too
                swept = parts["dataset"]
                built = registry.create("dataset", swept.name, swept.params, field="dataset")
                check_data(built, swept, data_dir)
            for seed in config.seeds:
                runs.append(
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
                )
    return runs


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


def _sweeps(sweep: SweepConfig | None) -> bool:
    """A block that sweeps something (``sweep: {}`` in a strategy opts out of the suite's)."""
    return bool(sweep and (sweep.settings or sweep.grid or sweep.random))


PIECES = {
    "dataset": PartRef,
    "architecture": ArchitectureConfig,
    "train": TrainConfig,
    "loss": PartRef,
    "constraint": PartRef,
    "optimizer": OptimizerConfig,
    "eval": EvalConfig,
}


def _swept(base: dict, setting: Setting, registry: Registry, strategy: str) -> dict:
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


def sweep_size(config: SuiteConfig) -> int:
    """Runs the suite expands to, computed without expanding its sweeps."""
    total = 0
    for strategy in config.strategies.values():
        sweep = strategy.sweep if strategy.sweep is not None else config.sweep
        total += (sweep.size if _sweeps(sweep) else 1) * len(config.seeds)
    return total


def check_data(dataset, ref: PartRef, data_dir: Path | None) -> None:
    """The dataset's own check that its data is there (``Dataset.check``), as a SuiteError."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise SuiteError(f"--data-dir {data_dir} is not a directory", field="dataset")
    try:
        dataset.check(data_dir)
    except HarnessError as exc:
        raise SuiteError(str(exc), field="dataset") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a plugin's check failing is a suite error, never a crash
        message = f"dataset {ref.name!r}: {type(exc).__name__}: {exc}"
        raise SuiteError(message, field="dataset") from None


def default_metrics(registry: Registry) -> list[str]:
    """Every registered default metric, when a suite does not choose."""
    return [name for name, info in registry.parts["metric"].items() if info.cls.default]
