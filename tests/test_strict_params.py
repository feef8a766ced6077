"""Strict part parameters: no booleans for numbers, no NaN/±inf for floats unless declared."""

import math
from typing import Annotated

import pytest
from conftest import TOY_SUITE
from pydantic import AllowInfNan, Field
from typer.testing import CliRunner

from harness.cli import app
from harness.core.errors import SuiteError
from harness.parts import Constraint
from harness.registry import PartInfo, Registry, validate_params


class Declared(Constraint):
    def __init__(
        self,
        c: float = 1.0,
        p: Annotated[float, AllowInfNan()] = 2.0,
        q: Annotated[float, Field(allow_inf_nan=True)] = 0.0,
        sizes: tuple[int, int] = (1, 2),
        flag: bool = False,
    ):
        pass


INFO = PartInfo("constraint", "declared", Declared, "test")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"c": True}, "expected a number, got a boolean"),
        ({"sizes": [1, False]}, "expected a number, got a boolean"),
        ({"c": float("nan")}, "finite number"),
        ({"c": float("-inf")}, "finite number"),
        ({"c": "nan"}, "finite number"),
    ],
)
def test_booleans_and_non_finite_floats_are_refused(params, message):
    with pytest.raises(SuiteError, match=message) as info:
        validate_params(INFO, params, field="strategies.x.constraint")
    assert info.value.field == f"strategies.x.constraint.{next(iter(params))}"


def test_declared_non_finite_values_and_real_booleans_pass():
    out = validate_params(
        INFO, {"p": float("inf"), "q": float("nan"), "flag": True, "c": 2}, field=None
    )
    assert out["p"] == math.inf and math.isnan(out["q"]) and out["flag"] is True
    assert out["c"] == 2.0


def test_builtins_refuse_nan_and_gradient_penalty_keeps_the_max_norm():
    registry = Registry()
    with pytest.raises(SuiteError, match="finite number"):
        registry.create("constraint", "weight_clip", {"c": float("nan")})
    assert registry.create("constraint", "gradient_penalty", {"p": math.inf}).p == math.inf
    with pytest.raises(SuiteError, match="greater than or equal to 1 .got nan"):  # declared
        registry.create("constraint", "gradient_penalty", {"p": float("nan")})


@pytest.mark.parametrize(("value", "message"), [("true", "boolean"), (".nan", "finite number")])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_cli_rejects_in_one_line_exit_2(tmp_path, write_suite, value, message, command):
    text = TOY_SUITE.replace(
        "constraint: gradient_penalty", f"constraint: {{name: weight_clip, c: {value}}}"
    )
    path = write_suite(text)
    store = tmp_path / "store"
    extra = ["--tracking-uri", f"sqlite:///{store / 'mlflow.db'}"] if command == "run" else []
    result = CliRunner().invoke(app, [command, str(path), *extra])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and "strategies.wgan-gp.constraint.c" in lines[0]
    assert message in lines[0]
    assert not store.exists()
