import math

import pytest
import torch
from conftest import TOY_SUITE

from harness.builtins.datasets import StackedMNIST
from harness.evaluation.coverage import class_coverage
from harness.evaluation.evaluator import mnist_evaluator
from harness.evaluation.stability import curve_stability
from harness.evaluation.transport import exact_w1
from harness.run.loading import load_suite
from harness.run.trainer import MetricsSink, train


def test_exact_w1_one_dimensional_closed_form():
    x, y = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[2.0], [3.0], [4.0]])
    assert exact_w1(x, y) == pytest.approx(2.0)  # squared cost would give 4.0


def test_exact_w1_of_a_shift_in_2d():
    x = torch.randn(300, 2)
    assert exact_w1(x, x + torch.tensor([3.0, 4.0])) == pytest.approx(5.0, rel=1e-6)
    assert exact_w1(x, x) == pytest.approx(0.0, abs=1e-9)


def test_a_toy_scatter_shows_its_own_dots_only_and_as_a_full_draw_would():
    """Each picture restores a cached backdrop and draws its dots over it: nothing of an
    earlier picture may remain, and the pixels are those of drawing the whole figure."""
    import io

    import numpy as np
    from PIL import Image

    from harness.core.parts import GaussianModes
    from harness.evaluation import samples

    def pixels(png: bytes):
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))

    angles = torch.arange(8) * torch.pi / 4
    modes = GaussianModes(torch.stack([2 * angles.cos(), 2 * angles.sin()], 1), 0.02)
    real = modes.centers.repeat(50, 1) + 0.02 * torch.randn(400, 2)
    fakes = [torch.randn(300, 2), 3 * torch.randn(300, 2) + 1, torch.zeros(5, 2)]
    layouts = [(real, modes), (4 * real, None)]  # other limits, no centres
    samples._backdrop.cache_clear()
    cases = [(f, r, m) for f in fakes for r, m in layouts]
    drawn = [samples.samples_png(*case) for case in cases]
    for picture, (f, r, m) in zip(drawn, cases, strict=True):
        samples._backdrop.cache_clear()
        assert samples.samples_png(f, r, m) == picture
        canvas, ax, lines, _ = samples._backdrop.__wrapped__(
            max(2.5, 1.15 * float(r.abs().max())),
            () if m is None else tuple(map(tuple, m.centers.tolist())),
        )
        lines[0].set_data(r[:, 0], r[:, 1])
        lines[1].set_data(f[:, 0], f[:, 1])
        for artist in [*lines, *ax.spines.values(), ax.get_legend()]:
            artist.set_animated(False)
        canvas.draw()  # the whole figure at once
        assert (pixels(picture) == np.asarray(canvas.buffer_rgba())).all()
    assert len({bytes(pixels(p)) for p in drawn}) == len(drawn)


def test_curve_stability():
    curve = [(0, 10.0), (100, 4.0), (200, 2.0), (300, 6.0)]
    out = curve_stability(curve, tail=2, threshold=5.0)
    assert out["best"] == 2.0 and out["final"] == 6.0 and out["best_final_gap"] == 4.0
    assert out["oscillation"] == pytest.approx(2.0)  # std of [2, 6]
    # trapezoid: (7*100 + 3*100 + 4*100) / 300
    assert out["auc"] == pytest.approx(1400 / 300)
    assert out["steps_to_threshold"] == 100.0
    assert "steps_to_threshold" not in curve_stability(curve, threshold=1.0)
    assert curve_stability([(0, 1.0), (10, 3.0)], lower_is_better=False)["best"] == 3.0


class Collect(MetricsSink):
    def __init__(self):
        self.values = {}

    def log(self, values, step):
        for k, v in values.items():
            self.values.setdefault(k, []).append((step, v))


def test_transport_stability_cost_are_logged(write_suite):
    text = TOY_SUITE.replace(
        "metrics: [mode_coverage]", "metrics: [mode_coverage, transport, stability, cost]"
    )
    suite, registry = load_suite(write_suite(text))
    sink = Collect()
    result = train(suite.runs[0], registry=registry, device="cpu", sink=sink)  # wgan-gp, n_critic 2
    m = result.metrics
    assert m["w1_exact"] > 0 and math.isfinite(m["w1_critic"])
    assert m["w1_gap"] == pytest.approx(abs(m["w1_exact"] - m["w1_critic"]))
    # per generator step: 2 critic steps × (real, fake, interpolates) + 1 generator pass
    assert m["critic_passes_per_step"] == 7
    assert m["peak_memory_mb"] > 10
    assert m["stability_final"] == m["reverse_kl"]
    assert len(sink.values["w1_exact"]) == 2  # evaluations at steps 3 and 6


def test_bce_minimax_gradients_vanish_against_bce(write_suite):
    text = (
        TOY_SUITE.replace("metrics: [mode_coverage]", "metrics: [stability]")
        .replace("steps: 6", "steps: 60")
        .replace("every: 3", "every: 60")
        .replace("log_every: 3", "log_every: 10")
    )
    # a strong critic rejects fakes confidently: exactly where log(1 - D(G(z))) saturates
    strong = "n_critic: 10, optimizer: {name: adam, lr: 0.005, betas: [0.5, 0.999]}"
    text = text.replace(
        "wgan-gp: {loss: wasserstein, constraint: gradient_penalty}",
        f"minimax: {{loss: bce_minimax, {strong}}}",
    )
    text = text.replace("bce: {loss: bce, constraint: none}", f"bce: {{loss: bce, {strong}}}")
    suite, registry = load_suite(write_suite(text))
    norms = {
        spec.strategy: train(spec, registry=registry, device="cpu").metrics[
            "grad_norm_generator_mean"
        ]
        for spec in suite.runs
        if spec.seed == 0
    }
    assert norms["minimax"] < 0.5 * norms["bce"]  # measured: 0.95 vs 2.86


def test_stacked_mnist_has_1000_modes_and_real_samples_cover_nearly_all():
    data = StackedMNIST(n=5_000)
    test = data.load("test")
    assert test.x.shape == (5_000, 3, 28, 28) and data.modes.count == 1000
    evaluator = mnist_evaluator()
    labels = evaluator.predict(test.x)
    assert labels.shape == (5_000, 3)
    codes = (labels * torch.tensor([100, 10, 1])).sum(1)
    cov = class_coverage(codes, 1000)
    assert cov["modes_covered"] >= 980
    assert (codes == test.y).float().mean() > 0.9
    collapsed = class_coverage(codes[test.y == test.y[0]], 1000)
    assert collapsed["modes_covered"] <= 3
