"""The training loop's bookkeeping: one value per metric and step, the run's cost summary."""

import pytest
from conftest import TOY_SUITE

from harness.run.loading import load_suite
from harness.run.trainer import MetricsSink, train


class Collect(MetricsSink):
    def __init__(self):
        self.values: dict[str, list[tuple[int, float]]] = {}

    def log(self, values, step):
        for key, value in values.items():
            self.values.setdefault(key, []).append((step, value))


def test_every_metric_is_logged_once_per_step_and_sec_per_step_ends_with_the_run_mean(
    write_suite,
):
    suite, registry = load_suite(write_suite(TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0]")))
    sink = Collect()
    result = train(suite.runs[1], registry=registry, device="cpu", sink=sink)
    for key, history in sink.values.items():
        steps = [step for step, _ in history]
        assert len(steps) == len(set(steps)), f"{key} logged twice at one step: {steps}"
    assert [step for step, _ in sink.values["sec_per_step"]] == [3, 6]
    final = sink.values["sec_per_step"][-1][1]
    assert final == pytest.approx(result.metrics["train_seconds"] / 6)
    assert final == result.metrics["sec_per_step"]
