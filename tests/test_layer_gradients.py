"""WGAN-GP's Figure 1b-c: per-layer gradient norms and weight histograms of the critic,
against closed forms, and end to end through the deep-critic suite's smoke profile."""

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from harness.cli import app
from harness.core.registry import Registry
from harness.evaluation.layers import at_bound_share, layer_gradient_norms, weight_histogram

WASSERSTEIN = Registry().create("loss", "wasserstein", {})


def test_a_linear_critic_gets_the_difference_of_the_means():
    """L = E f(fake) − E f(real) with f(x) = a·x + b: ∂L/∂a = mean(fake) − mean(real)."""
    critic = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0))
    real, fake = torch.randn(64, 3), torch.randn(64, 3) + torch.tensor([1.0, 2.0, 2.0])
    (norm,) = layer_gradient_norms(critic, WASSERSTEIN, real, fake)
    assert norm == pytest.approx(float((fake.mean(0) - real.mean(0)).norm()), rel=1e-5)


def test_norms_come_one_per_weight_layer_input_side_first():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    critic = nn.Sequential(critic, nn.Flatten(0))
    with torch.no_grad():  # a zero middle layer: nothing flows below it, a constant above it
        critic[0][2].weight.zero_()
        critic[0][2].bias.fill_(1.0)
    norms = layer_gradient_norms(critic, WASSERSTEIN, torch.randn(32, 2), torch.randn(32, 2))
    assert len(norms) == 3
    assert norms[0] == 0 and norms[1] > 0 and norms[2] == 0


def test_clipped_weights_are_all_at_the_bound_and_gaussian_ones_are_not():
    layer = nn.Linear(50, 50)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(50, 50).sign() * 0.01)
    assert at_bound_share(layer) == pytest.approx(1.0)
    with torch.no_grad():
        layer.weight.normal_()
    assert at_bound_share(layer) < 0.01
    edges, counts = weight_histogram(layer)
    assert counts.sum() == 2500 and edges[0] == -edges[-1]
    assert np.isclose(edges[-1], float(layer.weight.detach().abs().max()))


def test_the_deep_critic_suite_logs_a_norm_per_layer_and_reports_the_figure(tmp_path):
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    suite = "suites/wgan_gp_deep_critic.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["run", suite, "-p", "smoke", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    out = tmp_path / "report"
    args = ["report", suite, "--tracking-uri", uri, "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    import pandas as pd

    runs = pd.read_csv(out / "runs.csv")
    layers = [c for c in runs.columns if c.startswith("grad_norm_layer_")]
    assert layers == [f"grad_norm_layer_{i:02d}" for i in range(1, 6)]  # depth 4: 5 weights
    assert runs[layers].notna().all().all() and (runs["weights_at_bound"] >= 0).all()
    clipped = runs.set_index("strategy")["weights_at_bound"]
    assert clipped["clip-0.001"] > clipped["wgan-gp"]  # clipping drives weights to ±c at once
    assert (out / "layers.png").stat().st_size > 0
