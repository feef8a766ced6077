"""The conformance kit: every registered part passes it, and broken parts fail it with a
message naming the part and the rule."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from harness.parts import Architecture, ClassModes, Constraint, Dataset, Loss, Samples
from harness.registry import Registry
from harness.testing import DEVICES, check_architecture, check_constraint, check_dataset, check_loss

REGISTRY = Registry()
CHECKS = {
    "constraint": check_constraint,
    "loss": check_loss,
    "architecture": check_architecture,
    "dataset": check_dataset,
}
SMALL = {"n": 256, "width": 16}  # size parameters, shrunk wherever a part has them
PARTS = [
    pytest.param(kind, name, device.values[0], marks=device.marks, id=f"{kind}-{name}-{device.id}")
    for kind in CHECKS
    for name in REGISTRY.parts[kind]
    for device in (DEVICES[:1] if kind == "dataset" else DEVICES)  # datasets load on the CPU
]


@pytest.mark.parametrize(("kind", "name", "device"), PARTS)
def test_every_registered_part_passes_the_kit(kind, name, device):
    names = {p.name for p in REGISTRY.get(kind, name).params}
    part = REGISTRY.create(kind, name, {k: v for k, v in SMALL.items() if k in names})
    if kind == "dataset":
        check_dataset(part)
    else:
        CHECKS[kind](part, device=device)


class LeakyPenalty(Constraint):
    def penalty(self, critic, real, fake):
        return critic(fake).pow(2).mean()  # the fakes are not detached


class VectorPenalty(Constraint):
    def penalty(self, critic, real, fake):
        return critic(real).pow(2)  # one value per sample, never reduced


class FreezingWrap(Constraint):
    def wrap_critic(self, critic):
        next(critic.parameters()).requires_grad_(False)
        return critic


class GraphProjection(Constraint):
    def after_critic_step(self, critic):  # no torch.no_grad()
        for p in critic.parameters():
            p.data = p.clamp(-0.01, 0.01)


class ReplacingClip(Constraint):
    """Weight clipping written with new Parameter objects: the optimiser keeps stepping the
    old ones, so the critic stops learning (w1_critic -0.001 vs 0.020 in place)."""

    def after_critic_step(self, critic):
        with torch.no_grad():
            for m in critic.modules():
                if isinstance(m, nn.Linear | nn.Conv2d):
                    m.weight = nn.Parameter(m.weight.clamp(-0.01, 0.01))


class InPlaceClip(Constraint):
    def after_critic_step(self, critic):
        with torch.no_grad():
            for p in critic.parameters():
                p.clamp_(-0.01, 0.01)


class ReplacingPenalty(Constraint):
    def penalty(self, critic, real, fake):
        first = next(m for m in critic.modules() if isinstance(m, nn.Linear | nn.Conv2d))
        first.bias = nn.Parameter(first.bias.detach().clone())
        return critic(real).pow(2).mean()


class ReplacingWrap(Constraint):
    def wrap_critic(self, critic):
        first = next(m for m in critic.modules() if isinstance(m, nn.Linear | nn.Conv2d))
        first.weight = nn.Parameter(first.weight.detach() * 0.5)
        return critic


class UnseededPenalty(Constraint):
    def penalty(self, critic, real, fake):
        eps = float(np.random.default_rng().random())  # OS entropy, not the run's seed
        return critic(eps * real + (1 - eps) * fake.detach()).pow(2).mean()


class ScaledWrap(Constraint):
    def wrap_critic(self, critic):
        scale = torch.rand(()) + 0.5  # state outside the state_dict
        critic.register_forward_hook(lambda module, args, out: out * scale)
        return critic


class SwappedWasserstein(Loss):
    def critic_loss(self, real_out, fake_out):
        return real_out.mean() - fake_out.mean()

    def generator_loss(self, fake_out):
        return -fake_out.mean()


class BatchNormCritic(Architecture):
    def build(self, z_dim, data_shape, output):
        dim = math.prod(data_shape)
        generator = nn.Sequential(nn.Linear(z_dim, dim), nn.Unflatten(1, data_shape))
        critic = nn.Sequential(
            nn.Flatten(), nn.Linear(dim, 8), nn.BatchNorm1d(8), nn.Linear(8, 1), nn.Flatten(0)
        )
        return generator, critic


class ShortLabels(Dataset):
    modes = ClassModes(n_classes=2)

    def load(self, split, data_dir=None):
        return Samples(torch.zeros(10, 2), torch.zeros(9, dtype=torch.long))


@pytest.mark.parametrize(
    ("check", "part", "message"),
    [
        (
            check_constraint,
            LeakyPenalty,
            "constraint LeakyPenalty: penalty must backpropagate into the critic only, but "
            "gradients reached the generator (0.weight, 0.bias, 2.weight, 2.bias): "
            "detach the fake samples",
        ),
        (
            check_constraint,
            VectorPenalty,
            "constraint VectorPenalty: penalty must return a floating-point scalar tensor "
            "(shape ()) or None, got shape (8,)",
        ),
        (
            check_constraint,
            FreezingWrap,
            "constraint FreezingWrap: wrap_critic must keep the critic's parameters trainable; "
            "frozen: 0.weight",
        ),
        (
            check_constraint,
            GraphProjection,
            "constraint GraphProjection: after_critic_step must run without building an "
            "autograd graph (wrap it in torch.no_grad()), but clamp produced a tensor with a "
            "grad_fn",
        ),
        (
            check_constraint,
            ReplacingClip,
            "constraint ReplacingClip: after_critic_step must update the critic's parameters "
            "in place (p.copy_(...), p.clamp_(...) under torch.no_grad()), never assign a new "
            "nn.Parameter: the optimiser keeps updating the old ones and the critic stops "
            "learning; replaced: 0.weight, 2.weight",
        ),
        (
            check_constraint,
            ReplacingPenalty,
            "constraint ReplacingPenalty: penalty must update the critic's parameters in place "
            "(p.copy_(...), p.clamp_(...) under torch.no_grad()), never assign a new "
            "nn.Parameter: the optimiser keeps updating the old ones and the critic stops "
            "learning; replaced: 0.bias",
        ),
        (
            check_constraint,
            ReplacingWrap,
            "constraint ReplacingWrap: wrap_critic must keep the critic's Parameter objects "
            "(reparametrize them, e.g. with torch.nn.utils.parametrize, instead of assigning a "
            "new nn.Parameter); replaced: 0.weight",
        ),
        (
            check_constraint,
            UnseededPenalty,
            "constraint UnseededPenalty: must be deterministic under a seed, but the penalty "
            "differs between two runs with seed 0",
        ),
        (
            check_constraint,
            ScaledWrap,
            "constraint ScaledWrap: a freshly wrapped critic loaded with the wrapped critic's "
            "state_dict must give the same outputs (keep state in parameters or buffers)",
        ),
        (
            check_loss,
            SwappedWasserstein,
            "loss SwappedWasserstein: critic_loss must fall as the critic's outputs on real "
            "samples rise",
        ),
        (
            check_architecture,
            BatchNormCritic,
            "architecture BatchNormCritic: the critic must treat samples independently "
            "(no batch norm): per-sample gradient penalties need it; an architecture whose "
            "critic does not declares per_sample_critic = False",
        ),
        (
            check_dataset,
            ShortLabels,
            "dataset ShortLabels: load('train'): y must be a long tensor of 10 mode labels, "
            "got torch.int64 (9,)",
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_broken_parts_fail_with_a_readable_message(check, part, message):
    with pytest.raises(AssertionError) as exc:
        check(part)
    assert str(exc.value) == message


def test_a_batch_norm_critic_that_says_so_passes():
    class Declared(BatchNormCritic):
        per_sample_critic = False

    check_architecture(Declared)


def test_parameters_go_with_the_class():
    with pytest.raises(TypeError, match="pass parameters with the part's class"):
        check_constraint(REGISTRY.create("constraint", "weight_clip", {}), c=0.1)
    with pytest.raises(TypeError, match="not a subclass of harness.parts.Constraint"):
        check_constraint(SwappedWasserstein)


def test_in_place_projection_passes_where_replacing_parameters_fails():
    check_constraint(InPlaceClip)  # the same clip as ReplacingClip, written in place


class GradientNormalized(nn.Module):
    """f(x) / (‖∇f(x)‖ + |f(x)|), a wrapper that needs input gradients in its forward pass
    (gradient normalization). It keeps the inner critic as a submodule, not its ``pack``."""

    def __init__(self, critic: nn.Module, safe: bool):
        super().__init__()
        self.inner, self.safe = critic, safe

    def forward(self, x):
        if self.safe:  # the documented way: grad under enable_grad, a graph only when grad is on
            graph = torch.is_grad_enabled()
            with torch.enable_grad():
                x = x if x.requires_grad else x.detach().requires_grad_(True)
                f = self.inner(x)
                (grad,) = torch.autograd.grad(f.sum(), x, create_graph=graph)
        else:  # assumes grad is on: fails under torch.no_grad()
            x = x.requires_grad_(True)
            f = self.inner(x)
            (grad,) = torch.autograd.grad(f.sum(), x, create_graph=True)
        norm = grad.reshape(len(f), -1).norm(dim=1)  # per score: a pack of k samples is one
        return f / (norm + f.abs() + 1e-8)


def normalizing(safe: bool):
    class GN(Constraint):
        def wrap_critic(self, critic):
            return GradientNormalized(critic, safe)

    return GN


def test_a_wrapper_that_needs_gradients_passes_written_the_documented_way():
    check_constraint(normalizing(safe=True))  # packs found through it, no_grad and grad in x


def test_a_wrapper_that_fails_under_no_grad_gets_the_rule():
    with pytest.raises(AssertionError, match=r"must run under torch.no_grad\(\).*enable_grad"):
        check_constraint(normalizing(safe=False))


def test_a_wrapper_that_drops_the_packing_critic_gets_the_rule():
    class Rebuilt(Constraint):  # scores single samples again: the pack is lost
        def wrap_critic(self, critic):
            if getattr(critic, "pack", 1) == 1:
                return critic
            inner = critic.critic
            return nn.Sequential(nn.Unflatten(1, (1, 2)), nn.Flatten(1), nn.Linear(2, 4), inner)

    with pytest.raises(AssertionError, match="scoring packs"):
        check_constraint(Rebuilt)
