"""PacGAN's Stacked MNIST networks: shapes, their layers, their D/G capacity ratio at the
reduced width, their noise and data range."""

import pytest
import torch
from torch import nn

from harness.builtins.pacgan_dcgan_nets import UniformNoise
from harness.core.registry import Registry

SHAPE = (3, 28, 28)


def build(name: str, z_dim: int, **params):
    torch.manual_seed(0)
    return Registry().create("architecture", name, params).build(z_dim, SHAPE, None)


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_their_dcgan_keeps_the_paper_d_to_g_ratio_at_the_reduced_width():
    theirs = [count(net) for net in build("pacgan_dcgan", 100, width=64)]
    reduced = [count(net) for net in build("pacgan_dcgan", 25, width=16)]
    assert theirs == [4_514_819, 4_310_401]  # generator, discriminator at their width, z 100
    assert theirs[1] / theirs[0] == pytest.approx(0.9547, abs=1e-4)
    assert reduced[1] / reduced[0] == pytest.approx(theirs[1] / theirs[0], rel=1e-3)


def test_their_dcgan_has_5x5_kernels_batch_norm_in_both_nets_and_scores_packs():
    generator, critic = build("pacgan_dcgan", 25, width=8, pack=2)
    for net in (generator, critic):
        kernels = {
            m.kernel_size for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
        }
        assert kernels == {(5, 5)}
        assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    images = generator(torch.randn(6, 25))
    assert images.shape == (6, *SHAPE)
    assert critic(images).shape == (3,)  # three packs of two


def test_their_dcgan_sees_real_images_in_0_1_and_a_tanh_generator():
    """The harness's [−1, 1] images enter the discriminator as x/2 + 1/2, and the generator's
    tanh t leaves as 2t − 1: their game, mapped by one affine map."""
    generator, critic = build("pacgan_dcgan", 25, width=4)
    first = critic.body[0]
    assert first(torch.tensor([-1.0, 1.0])).tolist() == [0.0, 1.0]
    images = generator(torch.randn(64, 25))
    assert images.min() >= -3 and images.max() <= 1
    assert build("pacgan_dcgan", 25, width=4, unit_data=False)[0](torch.randn(64, 25)).min() >= -1


def test_uniform_noise_is_uniform_on_minus_one_one():
    u = UniformNoise()(torch.randn(200_000, generator=torch.Generator().manual_seed(0)))
    assert u.min() > -1 and u.max() < 1
    assert float(u.mean()) == pytest.approx(0, abs=0.01)
    assert float(u.var()) == pytest.approx(1 / 3, abs=0.01)
    counts = torch.histc(u, bins=10, min=-1, max=1)
    assert float((counts / len(u) - 0.1).abs().max()) < 0.005


@pytest.mark.parametrize(("d_width", "parameters"), [(2, 585), (4, 1_889)])
def test_table_3_small_discriminators_against_their_generator(d_width, parameters):
    generator, critic = build("pacgan_dcgan_small", 256, d_width=d_width)
    assert (count(critic), count(generator)) == (parameters, 287_875)
    kernels = {m.kernel_size for m in critic.modules() if isinstance(m, nn.Conv2d)}
    assert kernels == {(3, 3)}
    assert critic(generator(torch.randn(4, 256))).shape == (4,)


def test_init_is_theirs_normal_0_02_and_zero_biases():
    generator, critic = build("pacgan_dcgan", 100, width=64)
    linear = next(m for m in generator.modules() if isinstance(m, nn.Linear))
    assert float(linear.weight.detach().std()) == pytest.approx(0.02, rel=0.02)
    conv = next(m for m in critic.modules() if isinstance(m, nn.Conv2d))
    assert float(conv.weight.detach().abs().max()) <= 0.04  # truncated at two standard deviations
    assert all(
        float(m.bias.detach().abs().max()) == 0
        for m in critic.modules()
        if isinstance(m, nn.Conv2d)
    )


def test_other_image_sizes_are_refused_with_the_shape():
    arch = Registry().create("architecture", "pacgan_dcgan", {})
    with pytest.raises(ValueError, match=r"C×28×28 images, got samples of shape 2"):
        arch.build(8, (2,), None)


def test_a_penalty_on_their_batch_norm_critic_is_warned_once_and_clipping_is_not(
    write_suite, caplog
):
    from harness.run.loading import load_suite

    suite = """
    name: bn
    dataset: {name: stacked_mnist, source: embedded, n: 200}
    architecture: {name: pacgan_dcgan, width: 4, z_dim: 8}
    train: {steps: 2, batch_size: 16}
    sweep: {settings: {A: {optimizer.lr: 1.0e-4}, B: {optimizer.lr: 2.0e-4}}}
    strategies:
      gp: {loss: wasserstein, constraint: gradient_penalty}
      clip: {loss: wasserstein, constraint: weight_clip}
    seeds: [0, 1]
    eval: {every: 2, samples: 32}
    metrics: [mode_coverage]
    """
    with caplog.at_level("WARNING", logger="harness"):
        load_suite(write_suite(suite))
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "strategies.gp: constraint 'gradient_penalty' penalises per-sample gradients, but "
        "architecture 'pacgan_dcgan''s critic couples the samples of a batch (batch norm)"
    ]
