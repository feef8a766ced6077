"""--compile: torch.compile of generator and critic, with a one-line fallback to eager."""

import functools
import logging
import os

import pytest
from conftest import TOY_SUITE
from test_cli import child_runs, harness

from harness.run.loading import load_suite
from harness.run.trainer import train

VOLATILE = {"eval_seconds", "train_seconds", "sec_per_step", "compile_seconds"}
SUITE = TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0]")


def broken_backend(gm, example_inputs):
    raise RuntimeError("no compiler here\nsecond line of a long compiler error")


@pytest.fixture
def failing_compile(monkeypatch):
    """torch.compile whose backend fails at the first call, as a missing compiler would."""
    import torch._dynamo

    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=broken_backend))
    yield
    torch._dynamo.reset()


def stable(metrics):
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def test_a_failing_compile_falls_back_to_eager_with_one_line(write_suite, failing_compile, caplog):
    suite, registry = load_suite(write_suite(SUITE))
    spec = suite.runs[0]  # gradient penalty: the double backward too
    eager = train(spec, registry=registry, device="cpu")
    with caplog.at_level(logging.WARNING, logger="harness"):
        compiled = train(spec, registry=registry, device="cpu", compile=True)
    warnings = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith("torch.compile failed, training eagerly:")
    assert "no compiler here" in warnings[0] and "second line" not in warnings[0]
    assert compiled.status == "finished"
    assert stable(compiled.metrics) == stable(eager.metrics)  # the trial step left no trace
    assert compiled.metrics["compile_seconds"] > 0


def test_cli_compile_flag_reaches_the_trainer(tmp_path, write_suite, failing_compile, caplog):
    (tmp_path / "store").mkdir()
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    with caplog.at_level(logging.WARNING, logger="harness"):
        result = harness("run", write_suite(SUITE), "--compile", "--tracking-uri", store)
    assert result.exit_code == 0, result.output
    assert sum("torch.compile failed" in r.getMessage() for r in caplog.records) == 2
    _, _, kids = child_runs(store, "tiny")
    assert all("compile_seconds" in k.data.metrics for k in kids)


@pytest.mark.skipif(
    not os.environ.get("HARNESS_TEST_COMPILE"),
    reason="a real torch.compile takes about a minute on 2 CPU cores; HARNESS_TEST_COMPILE=1",
)
def test_compiled_training_matches_eager(write_suite, caplog):
    import torch._dynamo

    torch._dynamo.reset()
    suite, registry = load_suite(write_suite(SUITE))
    for spec in suite.runs:  # gradient penalty (double backward through the eager critic), bce
        eager = train(spec, registry=registry, device="cpu")
        with caplog.at_level(logging.WARNING, logger="harness"):
            compiled = train(spec, registry=registry, device="cpu", compile=True)
        assert not [r for r in caplog.records if "torch.compile" in r.getMessage()]
        a, b = stable(eager.metrics), stable(compiled.metrics)
        assert a.keys() == b.keys()
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
