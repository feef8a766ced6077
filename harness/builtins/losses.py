"""Built-in GAN losses: BCE (non-saturating and minimax), Wasserstein, hinge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.hookspecs import hookimpl
from harness.core.parts import Loss

if TYPE_CHECKING:
    from torch import Tensor


class BCE(Loss):
    """Binary cross-entropy on logits with the non-saturating generator loss -log D(G(z))
    (Goodfellow et al., 2014, section 3)."""

    output = "logit"

    def critic_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        from torch.nn.functional import softplus

        return softplus(-real_out).mean() + softplus(fake_out).mean()

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        from torch.nn.functional import softplus

        return softplus(-fake_out).mean()


class BCEMinimax(BCE):
    """BCE with the saturating minimax generator loss log(1 - D(G(z))): its gradient vanishes
    when the critic confidently rejects fakes."""

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        from torch.nn.functional import softplus

        return -softplus(fake_out).mean()


class Wasserstein(Loss):
    """Wasserstein-1 via Kantorovich-Rubinstein duality (Arjovsky et al., 2017); needs a
    1-Lipschitz critic."""

    output = "score"

    def critic_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return fake_out.mean() - real_out.mean()

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        return -fake_out.mean()


class Hinge(Loss):
    """Hinge loss (Lim & Ye, 2017; Miyato et al., 2018, SNGAN)."""

    output = "score"

    def critic_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return (1 - real_out).relu().mean() + (1 + fake_out).relu().mean()

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        return -fake_out.mean()


@hookimpl
def register_losses(register):
    register("bce", BCE)
    register("bce_minimax", BCEMinimax)
    register("wasserstein", Wasserstein)
    register("hinge", Hinge)
