"""The parts the paper reproductions need (PacGAN's grid, maxout critic, packing; the Swiss roll;
the critic's value surface) against their protocols, and every reproduction suite's smoke
profile end to end."""

import io
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from harness.analysis.report import write_report
from harness.analysis.tables import Source
from harness.builtins.architectures import DCGAN28, MLP
from harness.builtins.datasets import Grid25, SwissRoll
from harness.builtins.pacgan import PacGANToy
from harness.builtins.pacgan_nets import Maxout
from harness.builtins.packing import packed
from harness.core.errors import SuiteError
from harness.evaluation.surface import critic_surface
from harness.run.loading import load_suite
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store as Tracker

SUITES = Path(__file__).parent.parent / "suites"
REPRODUCTIONS = [
    "pacgan_grid",
    "wgan_gp_8gaussians",
    "wgan_gp_25gaussians",
    "wgan_gp_swissroll",
    "stacked_mnist",
]


# --- datasets ---------------------------------------------------------------------------


def test_pacgan_grid_geometry_matches_their_config():
    data = Grid25(n=50_000, spacing=2.0, sigma=0.05, scale=1.0)
    expected = {(float(x), float(y)) for x, y in itertools.product(range(-4, 5, 2), repeat=2)}
    assert {tuple(c) for c in data.modes.centers.tolist()} == expected
    assert data.modes.sigma == 0.05
    x, y = data.load("train")
    offsets = x - data.modes.centers[y]
    assert offsets.std(0).tolist() == pytest.approx([0.05, 0.05], rel=0.02)
    assert offsets.abs().max() < 6 * 0.05  # every point sits at its own centre
    assert torch.bincount(y, minlength=25).min() > 50_000 / 25 * 0.9


def test_grid25_defaults_stay_the_wgan_gp_toy_geometry():
    data = Grid25()
    assert data.modes.centers.abs().max().item() == pytest.approx(4 / 2.828)
    assert data.modes.sigma == pytest.approx(0.05 / 2.828)
    spaced = Grid25(spacing=3.0, sigma=0.1, scale=0.5)
    assert spaced.modes.centers.max().item() == pytest.approx(3.0)  # 3 × 2 × 0.5
    assert spaced.modes.sigma == pytest.approx(0.05)


def test_swiss_roll_is_sklearns_x_and_z_over_7_5():
    from sklearn.datasets import make_swiss_roll

    x, _ = SwissRoll(n=1000).load("test")
    points, _ = make_swiss_roll(1000, noise=0.25, random_state=1)
    assert x.shape == (1000, 2)
    np.testing.assert_allclose(x.numpy(), points[:, [0, 2]] / 7.5, rtol=1e-6)
    assert not torch.equal(x, SwissRoll(n=1000).load("train").x)  # splits differ


# --- maxout critic, batch-norm generator --------------------------------------------------


def test_maxout_is_the_largest_piece_of_each_unit():
    layer = Maxout(3, units=4, pieces=5)
    x = torch.randn(7, 3)
    pieces = (x @ layer.linear.weight.T + layer.linear.bias).view(7, 4, 5)
    assert layer(x).shape == (7, 4)
    torch.testing.assert_close(layer(x), pieces.max(-1).values)


def test_pacgan_toy_has_their_layer_shapes():
    generator, critic = PacGANToy().build(2, (2,), "logit")
    linears = [m for m in critic.modules() if isinstance(m, nn.Linear)]
    shapes = [(1000, 2), (1000, 200), (1000, 200), (1, 200)]  # 200 units × 5 pieces
    assert [tuple(m.weight.shape) for m in linears] == shapes
    maxouts = [m for m in critic.modules() if isinstance(m, Maxout)]
    assert [(m.units, m.pieces) for m in maxouts] == [(200, 5)] * 3
    hidden = [m for m in generator.modules() if isinstance(m, nn.Linear)][:-1]
    assert [tuple(m.weight.shape) for m in hidden] == [(400, 2)] + [(400, 400)] * 3
    assert all(m.bias is None for m in hidden)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in generator.modules()) == 4
    assert generator(torch.randn(10, 2)).shape == (10, 2)
    assert critic(torch.randn(10, 2)).shape == (10,)
    assert linears[0].weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert linears[0].bias.abs().max() == 0


# --- packing ------------------------------------------------------------------------------


class Recorder(nn.Module):
    """A critic that remembers its input and returns each row's sum."""

    def forward(self, x):
        self.seen = x
        return x.flatten(1).sum(1)


@pytest.mark.parametrize("shape", [(2,), (3, 4, 4)])
def test_a_packed_critic_sees_k_consecutive_samples_concatenated(shape):
    inner = Recorder()
    built = []
    critic = packed(lambda s: built.append(s) or inner, shape, pack=4)
    assert built == [(4 * shape[0], *shape[1:])]
    x = torch.randn(12, *shape)
    out = critic(x)
    assert out.shape == (3,)  # 12 samples, 3 packs
    assert inner.seen.shape == (3, 4 * shape[0], *shape[1:])
    torch.testing.assert_close(inner.seen[1], torch.cat(list(x[4:8]), dim=0))
    torch.testing.assert_close(out, x.view(3, -1).sum(1))


def test_a_batch_not_divisible_by_the_pack_is_a_clear_error():
    critic = packed(lambda s: Recorder(), (2,), pack=4)
    with pytest.raises(ValueError, match="packing 4 samples was called on 10, not a whole number"):
        critic(torch.randn(10, 2))


@pytest.mark.parametrize(
    ("arch", "shape"),
    [(MLP(width=8, depth=1, pack=2), (2,)), (DCGAN28(width=4, pack=2), (3, 28, 28))],
)
def test_built_in_architectures_take_a_pack(arch, shape):
    generator, critic = arch.build(8, shape, "score")
    assert critic(generator(torch.randn(6, 8))).shape == (3,)
    assert arch.batch_multiple == 2


def test_suite_refuses_batches_that_are_not_multiples_of_the_pack(write_suite):
    path = write_suite(
        """
        name: packs
        dataset: {name: grid25, n: 500}
        architecture: {name: pacgan_toy, width: 4, gen_width: 4, z_dim: 2}
        train: {steps: 2, batch_size: 30}
        strategies:
          gan: {loss: bce}
          pac4: {loss: bce, architecture: {pack: 4}}
        """
    )
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    assert error.value.field == "strategies.pac4"
    assert "train.batch_size is 30, not a multiple of 4" in str(error.value)


def test_any_pack_evaluates_sample_counts_beyond_the_metrics_chunks(write_suite, tmp_path):
    # 1,002 samples: a multiple of 3 but not in chunks of 1,000 (critic scores) or 512
    # (Lipschitz interpolates); every metric must take whole packs of 3
    path = write_suite(
        """
        name: pack3
        dataset: {name: grid25, n: 1200}
        architecture: {name: pacgan_toy, width: 4, pieces: 2, gen_width: 4, gen_depth: 1,
                       z_dim: 2, pack: 3}
        train: {steps: 2, batch_size: 30, log_every: 1}
        strategies:
          wgan-gp: {loss: wasserstein, constraint: gradient_penalty}
        seeds: [0]
        eval: {every: 2, samples: 1002}
        metrics: [mode_coverage, transport, lipschitz, value_surface]
        """
    )
    suite, registry = load_suite(path)
    [outcome] = run_suite(
        suite, registry, Tracker(f"sqlite:///{tmp_path / 'm.db'}"), RunSettings(device="cpu")
    )
    assert outcome.status == "finished", outcome
    assert math.isfinite(outcome.metrics["w1_critic"])
    assert math.isfinite(outcome.metrics["grad_norm_interp_mean"])


def test_strategies_override_architecture_and_batch_only_for_themselves():
    suite, _ = load_suite(SUITES / "pacgan_grid.yaml", profile="full")
    runs = {r.strategy: r for r in suite.runs if r.seed == 0}
    assert runs["gan"].architecture.params.get("pack", 1) == 1
    assert runs["gan"].train.batch_size == 100
    assert runs["pacgan4"].architecture.params["pack"] == 4
    assert runs["pacgan4"].train.batch_size == 400  # 100 packs of 4, as their code
    assert runs["pacgan2"].train.batch_size == 200
    assert runs["pacgan4"].architecture.z_dim == 2
    assert runs["gan"].optimizer.betas == (0.8, 0.999)
    assert runs["gan"].train.steps == 400_000 and len({r.seed for r in suite.runs}) == 10
    assert {"wgan-gp-pack4", "wgan-sn-pack4", "wgan-clip-pack4"} <= set(runs)


def test_lipschitz_diagnostics_take_a_packed_critic():
    from harness.evaluation.lipschitz import lipschitz_diagnostics, lipschitz_lower_bound

    torch.manual_seed(0)
    inner = nn.Linear(4, 1, bias=False)
    critic = packed(lambda s: nn.Sequential(inner, nn.Flatten(0)), (2,), pack=2)
    x = torch.randn(64, 2)
    slope = torch.linalg.vector_norm(inner.weight).item()  # a linear map's exact constant
    bound = lipschitz_lower_bound(critic, x)  # over pairs of packs (4-D), never above it
    assert slope * 0.9 < bound <= slope * (1 + 1e-5)
    values = lipschitz_diagnostics(critic, x[:32], x[32:])
    assert values["lipschitz_upper_bound"] == pytest.approx(slope, rel=1e-4)


# --- value surface ------------------------------------------------------------------------


def test_critic_surface_is_f_on_the_grid_and_packs_copies():
    inner = nn.Linear(4, 1)
    critic = packed(lambda s: nn.Sequential(inner, nn.Flatten(0)), (2,), pack=2)
    real, fake = torch.randn(50, 2), torch.randn(50, 2)
    s = critic_surface(critic, real, fake, resolution=9, extent=2.0)
    assert s["values"].shape == (9, 9) and int(s["pack"]) == 2
    i, j = 2, 7  # values[i, j] = f(xs[j], ys[i]) with the pack (p, p)
    point = torch.tensor([[s["xs"][j], s["ys"][i]]], dtype=torch.float32)
    expected = inner(point.repeat(1, 2)).item()
    assert s["values"][i, j] == pytest.approx(expected, abs=1e-5)


# --- suites end to end --------------------------------------------------------------------


@pytest.mark.parametrize("name", REPRODUCTIONS)
def test_reproduction_suites_validate_in_every_profile(name):
    path = SUITES / f"{name}.yaml"
    for profile in [None, *load_suite(path)[0].config.profiles]:
        try:
            suite, _ = load_suite(path, profile=profile)
        except SuiteError as exc:  # full MNIST is on disk only: the profile needs --data-dir
            assert "needs --data-dir" in str(exc) and profile == "full"
            continue
        assert suite.runs


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('repro') / 'mlflow.db'}"


@pytest.mark.parametrize("name", REPRODUCTIONS)
def test_smoke_profile_end_to_end(name, smoke_store):
    suite, registry = load_suite(SUITES / f"{name}.yaml", profile="smoke")
    outcomes = run_suite(suite, registry, Tracker(smoke_store), RunSettings(device="cpu"))
    assert [o.status for o in outcomes] == ["finished"] * len(suite.runs)


def test_report_draws_the_value_surfaces_of_a_real_run(smoke_store, tmp_path):
    for name in ("pacgan_grid", "stacked_mnist"):  # trained here unless this worker has them
        suite, registry = load_suite(SUITES / f"{name}.yaml", profile="smoke")
        run_suite(suite, registry, Tracker(smoke_store), RunSettings(device="cpu"))
    page = write_report(Source(experiment="pacgan_grid", uri=smoke_store), tmp_path)
    png = (tmp_path / "surface.png").read_bytes()
    width, height = Image.open(io.BytesIO(png)).size
    assert width > 3 * height * 0.8  # one panel per strategy, side by side
    assert "Critic value surfaces" in page.read_text()
    mnist = write_report(Source(experiment="stacked_mnist", uri=smoke_store), tmp_path / "images")
    assert not (tmp_path / "images" / "surface.png").exists()  # images have no plane
    assert mnist.exists() and math.isfinite(len(png))
