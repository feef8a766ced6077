import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.builtins.architecture_nets import Critic
from harness.builtins.architectures import DCGAN28, MLP
from harness.builtins.orthogonal import Orthogonal, conv_overlap
from harness.builtins.orthogonal_layers import GroupSort, bjorck, spectral_bound
from harness.evaluation.lipschitz import (
    gradient_norms,
    layer_spectral_norms,
    lipschitz_lower_bound,
    lipschitz_upper_bound,
)

TOL = 1e-5


def sigma_max(w: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(w, ord=2).item()


@pytest.mark.parametrize("shape", [(64, 8), (8, 64), (32, 32), (1, 50)])
def test_bjorck_gives_unit_singular_values(shape):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(shape, generator=gen) * 7.0
    singular = torch.linalg.svdvals(bjorck(w, iterations=40))
    assert torch.allclose(singular, torch.ones_like(singular), atol=1e-4)
    # and it is the nearest orthonormal matrix: the polar factor U Vᵀ of w
    u, _, vh = torch.linalg.svd(w, full_matrices=False)
    assert torch.allclose(bjorck(w, iterations=40), u @ vh, atol=1e-4)


@pytest.mark.parametrize("iterations", [1, 3, 15])
def test_bjorck_never_exceeds_one_even_unconverged(iterations):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(40, 60, generator=gen) * 1e3  # entries ≫ 1: LNets' √(mn) scaling would fail
    w[:, 0] *= 50  # badly conditioned
    assert sigma_max(bjorck(w, iterations)) <= 1 + TOL


def test_spectral_bound_is_an_upper_bound_and_exact_for_vectors():
    gen = torch.Generator().manual_seed(2)
    for shape in [(5, 3), (3, 5), (64, 64), (100, 2)]:
        w = torch.randn(shape, generator=gen)
        assert spectral_bound(w).item() >= sigma_max(w) * (1 - 1e-6)
    v = torch.tensor([[3.0, -4.0]])
    assert spectral_bound(v).item() == pytest.approx(5.0)


def test_group_sort_is_a_permutation_within_groups():
    x = torch.tensor([[3.0, 1.0, -2.0, 5.0, 0.0, 0.0]])
    assert torch.equal(GroupSort(2)(x), torch.tensor([[1.0, 3.0, -2.0, 5.0, 0.0, 0.0]]))
    assert torch.equal(GroupSort(3)(x), torch.tensor([[-2.0, 1.0, 3.0, 0.0, 0.0, 5.0]]))
    images = torch.randn(4, 6, 5, 5)  # channels are the features of an image
    out = GroupSort(2)(images)
    pairs, sorted_pairs = images.unflatten(1, (3, 2)), out.unflatten(1, (3, 2))
    assert torch.equal(sorted_pairs.min(2).values, pairs.min(2).values)
    assert torch.equal(sorted_pairs.max(2).values, pairs.max(2).values)
    assert torch.allclose(out.flatten(1).norm(dim=1), images.flatten(1).norm(dim=1))


def test_group_sort_preserves_gradient_norms():
    x = torch.randn(16, 8, requires_grad=True)
    v = torch.randn(16, 8)
    (grad,) = torch.autograd.grad((GroupSort(2)(x) * v).sum(), x)
    assert torch.allclose(grad.norm(dim=1), v.norm(dim=1))  # Jᵀv is a permutation of v


def test_group_sort_rejects_a_width_it_cannot_split():
    with pytest.raises(ValueError, match="multiple"):
        GroupSort(2)(torch.randn(2, 5))


@pytest.mark.parametrize(
    ("kernel", "stride", "dilation", "padding"),
    [(4, 2, 1, 1), (3, 2, 1, 1), (3, 1, 1, 1), (1, 1, 1, 0), (3, 2, 2, 2), (5, 3, 1, 2)],
)
def test_conv_overlap_matches_a_brute_force_count(kernel, stride, dilation, padding):
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    x = torch.ones(1, 1, 23, 23, requires_grad=True)
    # each input pixel's gradient of Σ conv(x) with an all-ones kernel counts its windows
    (count,) = torch.autograd.grad(
        F.conv2d(x, torch.ones(1, 1, kernel, kernel), **_geometry(conv)).sum(), x
    )
    assert conv_overlap(conv) == count.max().item()


def _geometry(conv: nn.Conv2d) -> dict:
    return {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation}


def test_orthogonal_mlp_critic_is_one_lipschitz_and_gradient_norm_preserving():
    torch.manual_seed(0)
    _, critic = MLP(width=16, depth=2).build(2, (32,), "score")  # input 32 ≥ width 16
    critic = Orthogonal().wrap_critic(critic)
    kinds = {type(m).__name__ for m in critic.modules()}
    assert "GroupSort" in kinds and "ReLU" not in kinds
    x = torch.randn(256, 32)
    norms = layer_spectral_norms(critic, x)
    assert len(norms) == 3
    for layer in norms:
        assert layer.operator == pytest.approx(1.0, abs=1e-5)
    grads = gradient_norms(critic, x)  # every layer's Jacobian preserves the norm
    assert torch.allclose(grads, torch.ones_like(grads), atol=1e-4)
    assert lipschitz_lower_bound(critic, x) <= 1 + TOL


def test_orthogonal_toy_critic_is_one_lipschitz():
    torch.manual_seed(0)
    _, critic = MLP(width=32, depth=3).build(2, (2,), "score")
    critic = Orthogonal().wrap_critic(critic)
    x = torch.randn(512, 2) * 2
    assert lipschitz_upper_bound(layer_spectral_norms(critic, x)) <= 1 + TOL
    # a 2-D input cannot use a 32-wide first layer's whole range: norms ≤ 1, not = 1
    assert gradient_norms(critic, x).max().item() <= 1 + TOL
    assert lipschitz_lower_bound(critic, x) <= 1 + TOL


def test_orthogonal_dcgan_critic_has_certified_true_conv_norms():
    torch.manual_seed(0)
    _, critic = DCGAN28(width=4).build(8, (1, 28, 28), "score")
    critic = Orthogonal().wrap_critic(critic)
    x = torch.randn(64, 1, 28, 28)
    norms = layer_spectral_norms(critic, x)
    assert len(norms) == 4
    for layer in norms:
        assert layer.operator <= 1 + 1e-4, layer
    for conv in norms[:3]:  # orthonormal reshaped kernels divided by √4 (4×4 or 3×3, stride 2)
        assert conv.reshaped == pytest.approx(0.5, abs=1e-5)
    assert norms[-1].operator == pytest.approx(1.0, abs=1e-5)  # the linear head
    assert lipschitz_upper_bound(norms) <= 1 + 1e-4
    assert lipschitz_lower_bound(critic, x) <= 1 + TOL
    # without the certified scale, the orthonormal reshaped kernel's true norm exceeds 1
    first = critic.body[0]
    unscaled = layer_spectral_norms(
        nn.Sequential(_copy_conv(first, scale=conv_overlap(first) ** 0.5)), x[:1]
    )
    assert unscaled[0].operator > 1.2


def _copy_conv(conv: nn.Conv2d, scale: float) -> nn.Conv2d:
    copy = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, **_geometry(conv))
    with torch.no_grad():
        copy.weight.copy_(conv.weight * scale)
    return copy


def test_certificate_survives_training_steps():
    torch.manual_seed(0)
    _, critic = DCGAN28(width=4).build(8, (1, 28, 28), "score")
    critic = Orthogonal(iterations=5).wrap_critic(critic)
    opt = torch.optim.SGD(critic.parameters(), lr=1.0)  # large steps: far from orthogonal
    for _ in range(3):
        opt.zero_grad()
        (-critic(torch.randn(8, 1, 28, 28)).mean()).backward()
        opt.step()
    for layer in layer_spectral_norms(critic, torch.randn(2, 1, 28, 28)):
        assert layer.operator <= 1 + 1e-4, layer


def test_orthonormalisation_runs_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    _, critic = MLP(width=64, depth=2).build(2, (64,), "score")
    linear = Orthogonal().wrap_critic(critic).body[1][2]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weight = linear.weight
        assert linear(torch.randn(4, 64)).dtype == torch.bfloat16  # the layer itself is bf16
    assert weight.dtype == torch.float32 and sigma_max(weight) <= 1 + TOL


def test_wrapped_critic_state_round_trips():
    torch.manual_seed(0)
    _, a = MLP(width=8, depth=2).build(2, (2,), "score")
    _, b = MLP(width=8, depth=2).build(2, (2,), "score")
    a, b = Orthogonal().wrap_critic(a), Orthogonal().wrap_critic(b)
    b.load_state_dict(a.state_dict())
    x = torch.randn(10, 2)
    assert torch.equal(a(x), b(x))


def test_orthogonal_refuses_layers_it_cannot_bound():
    critic = Critic(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1)))
    with pytest.raises(ValueError, match="LayerNorm"):
        Orthogonal().wrap_critic(critic)
    circular = Critic(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")))
    with pytest.raises(ValueError, match="zero padding"):
        Orthogonal().wrap_critic(circular)
