"""Suite files: YAML -> validated, fully-resolved runs (one per strategy × seed)."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

import harness
from harness.errors import HarnessError, SuiteError
from harness.registry import Registry

MAX_YAML_NODES = 100_000  # after alias expansion: refuses "billion laughs" documents

Module = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")]
Count = Annotated[int, Field(gt=0, le=10**9)]


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
    z_dim: Annotated[int, Field(gt=0, le=2**16)] = 64

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
    batch_size: Annotated[int, Field(gt=0, le=2**20)] = 64
    n_critic: Annotated[int, Field(gt=0, le=1000)] = 5
    log_every: Count = 50
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: autocast the forward passes (changes results: in the run key)"
    )


class OptimizerConfig(Strict):
    name: Literal["adam", "rmsprop", "sgd"]
    lr: Annotated[float, Field(gt=0, le=10)]
    betas: (
        tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] | None
    ) = None


class StrategyConfig(Strict):
    loss: PartRef
    constraint: PartRef = PartRef(name="none")
    optimizer: OptimizerConfig | None = None
    n_critic: Annotated[int, Field(gt=0, le=1000)] | None = None


class EvalConfig(Strict):
    every: Count = 500
    samples: Annotated[int, Field(gt=0, le=10**7)] = 2500


class SuiteConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    dataset: PartRef
    architecture: ArchitectureConfig
    train: TrainConfig
    strategies: dict[str, StrategyConfig] = Field(min_length=1)
    seeds: list[Annotated[int, Field(ge=0, lt=2**32)]] = Field(default=[0], min_length=1)
    eval: EvalConfig = EvalConfig()
    metrics: list[PartRef] = Field(default_factory=list)
    plugins: list[Module] = Field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)


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

    @property
    def config(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def run_key(self) -> str:
        config = self.config
        if config["train"]["precision"] == "fp32":  # the default: keys made before it existed
            del config["train"]["precision"]  # stay valid, so finished runs are still skipped
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


def read_yaml(path: Path) -> tuple[str, Any]:
    """Read a YAML file with the safe loader only, refusing alias bombs and deep nesting."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError("no such file", file=str(path)) from None
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
    loader = yaml.SafeLoader(text)
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
) -> tuple[Suite, Registry]:
    """Read, validate and resolve a suite; every plugin name and parameter is checked here,
    before any training starts. ``seeds`` and ``precision`` override the suite's."""
    path = Path(path)
    text, raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SuiteError("a suite must be a YAML mapping", file=str(path))
    if profile is not None:
        profiles = raw.get("profiles") or {}
        if not isinstance(profiles, dict) or profile not in profiles:
            close = difflib.get_close_matches(profile, list(profiles), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(profiles)}"
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
        error = exc.errors()[0]
        raise SuiteError(error["msg"], file=str(path), field=_field(error["loc"])) from None
    try:
        registry = registry or Registry()
        for module in config.plugins:
            registry.load_module(module)
        runs = resolve(config, registry)
    except SuiteError as exc:
        exc.file = str(path)
        raise
    except HarnessError as exc:
        raise SuiteError(str(exc), file=str(path)) from None
    return Suite(path=str(path), profile=profile, config=config, text=text, runs=runs), registry


def resolve(config: SuiteConfig, registry: Registry) -> list[RunSpec]:
    """Check every part and parameter by constructing it once, then expand the grid."""
    registry.create("dataset", config.dataset.name, config.dataset.params, field="dataset")
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
        optimizer = strategy.optimizer or OptimizerConfig(**constraint.default_optimizer)
        train = config.train
        if strategy.n_critic is not None:
            train = train.model_copy(update={"n_critic": strategy.n_critic})
        for seed in config.seeds:
            runs.append(
                RunSpec(
                    suite=config.name,
                    strategy=name,
                    seed=seed,
                    dataset=config.dataset,
                    architecture=arch,
                    train=train,
                    loss=strategy.loss,
                    constraint=strategy.constraint,
                    optimizer=optimizer,
                    eval=config.eval,
                    metrics=metrics,
                    plugins=config.plugins,
                )
            )
    return runs


def default_metrics(registry: Registry) -> list[str]:
    """Every registered default metric, when a suite does not choose."""
    return [name for name, info in registry.parts["metric"].items() if info.cls.default]
