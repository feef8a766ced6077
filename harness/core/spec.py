"""The suite's value types: a suite as written (:class:`SuiteConfig`) and one fully-resolved run
(:class:`RunSpec`, with its run key). Reading and resolving suite files is
:mod:`harness.run.loading`."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from harness.core.sweeps import SweepConfig
from harness.core.version import __version__

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
    steps: Count = Field(
        description="training steps: n_critic critic, generator_steps generator updates each"
    )
    batch_size: Annotated[Int, Field(gt=0, le=2**20)] = 64
    n_critic: Annotated[Int, Field(gt=0, le=1000)] = 5
    generator_steps: Annotated[Int, Field(ge=0, le=1000)] = Field(
        1,
        description="generator updates per step, after the critic's (PacGAN's code: 2); 0 "
        "holds the generator fixed at its initialisation (WGAN-GP's Figure 1a)",
    )
    updates: Literal["alternating", "simultaneous"] = Field(
        "alternating",
        description="simultaneous: the last critic update and the first generator update of a "
        "step are computed from one batch at the same weights, then applied together",
    )
    log_every: Count = 50
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: autocast the forward passes (changes results: in the run key)"
    )
    stack: Literal["auto", "off"] = Field(
        "auto",
        description="auto: runs that differ only in seed and optimiser settings train as one "
        "stacked model where a short trial measures it faster; off: each alone (not in the run "
        "key: stacking changes only the order of floating-point sums)",
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
    generator_steps: Annotated[Int, Field(ge=0, le=1000)] | None = None
    updates: Literal["alternating", "simultaneous"] | None = None
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


TRAIN_DEFAULTS = {"precision": "fp32", "generator_steps": 1, "updates": "alternating"}


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
    identity: dict[str, str] = Field(default_factory=dict)  # each part's code: core.identity

    @property
    def config(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def run_key(self) -> str:
        config = self.config
        for name, default in TRAIN_DEFAULTS.items():  # defaults: keys made before the field
            if config["train"][name] == default:  # existed stay valid, so finished runs are
                del config["train"][name]  # still skipped
        del config["train"]["stack"]  # how runs execute, not what they compute
        for name in ("setting", "sweep"):  # likewise for runs outside a sweep
            if config[name] is None:
                del config[name]
        if not config["identity"]:  # a spec built without a registry
            del config["identity"]
        payload = json.dumps({**config, "harness": __version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class Suite(BaseModel):
    """A validated suite: its config, the profile applied, the raw text and its runs."""

    path: str
    profile: str | None
    config: SuiteConfig
    text: str
    runs: list[RunSpec]
