"""The conformance kit's checks of stacking declarations (:mod:`harness.testing` calls them):
a constraint declaring ``members`` and an architecture declaring ``stackable`` must train
stacked as each member trains alone, within :data:`TOLERANCE`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from harness.core.errors import ContractError
from harness.run.members import MemberMixing, Members, Stacked, per_member

MEMBERS, STEPS, BATCH, Z_DIM = 3, 3, 8, 4
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # the order of sums differs; nothing else may
ELEMENTWISE_RULE = (
    "declares members = {declared!r}, so its hooks must treat each member's rows of a "
    "member-major batch alone: per-sample terms reduced with .mean() (each member gets its "
    "own), random tensors with one row per sample, element-wise projections; no batch-wide "
    "statistic such as std() over the batch. Declare members = None to train per run"
)


def check_constraint_members(make, label: str, nets: Callable[[], tuple], shape, device) -> None:
    """Train ``MEMBERS`` reference critics ``STEPS`` Wasserstein steps each alone (the global
    random stream seeded per member) and as one stack (each member's own stream): their
    weights must agree."""
    declared = getattr(make(), "members", None)
    if declared not in ("elementwise", "native"):
        return
    rule = ELEMENTWISE_RULE.format(declared=declared)
    data = torch.randn(64, *shape, device=device, generator=torch.Generator(device).manual_seed(7))
    alone = [_member(make, nets, m, device) for m in range(MEMBERS)]
    stacked = [_member(make, nets, m, device) for m in range(MEMBERS)]
    for m, (generator, critic, constraint) in enumerate(alone):
        torch.manual_seed(1000 + m)
        optimizer = torch.optim.SGD(critic.parameters(), lr=0.05)
        for _ in range(STEPS):
            real = data[torch.randint(0, len(data), (BATCH,), device=device)]
            with torch.no_grad():
                fake = generator(torch.randn(BATCH, Z_DIM, device=device))
            real_out, fake_out = critic(real), critic(fake)  # the trainer's order
            loss = fake_out.mean() - real_out.mean()
            penalty = constraint.penalty(critic, real, fake)
            optimizer.zero_grad()
            (loss if penalty is None else loss + penalty).backward()
            optimizer.step()
            constraint.after_critic_step(critic)
    try:
        trained = _train_stacked(stacked, data, declared, device)
    except MemberMixing as exc:
        raise ContractError(label, f"{rule}; stacked, it made {exc}") from exc
    except Exception as exc:
        raise ContractError(
            label, f"{rule}; stacked, it raised {type(exc).__name__}: {exc}"
        ) from exc
    for m, (_, critic, _) in enumerate(alone):
        for name, value in critic.state_dict().items():
            got = trained.member(m)[name]
            if not torch.allclose(value.float(), got.float(), **TOLERANCE):
                gap = (value.float() - got.float()).abs().max().item()
                raise ContractError(
                    label,
                    f"{rule}; trained stacked, member {m}'s {name} differs from its run alone "
                    f"by {gap:.3g} after {STEPS} steps",
                )


def _member(make, nets, m: int, device) -> tuple[nn.Module, nn.Module, object]:
    torch.manual_seed(m)
    generator, critic = (net.to(device) for net in nets())
    constraint = make()
    return generator, constraint.wrap_critic(critic), constraint


def _train_stacked(members, data, declared: str, device) -> Stacked:
    generator = Stacked([g for g, _, _ in members])
    critic = Stacked([c for _, c, _ in members])
    constraint = members[0][2]
    rngs = [torch.Generator(device).manual_seed(1000 + m) for m in range(MEMBERS)]
    rows = MEMBERS * BATCH
    hooks = (lambda: Members(rngs, rows)) if declared == "elementwise" else nullcontext
    optimizer = torch.optim.SGD(critic.parameters(), lr=0.05)
    for _ in range(STEPS):
        idx = [torch.randint(0, len(data), (BATCH,), device=device, generator=g) for g in rngs]
        real = data[torch.cat(idx)]
        z = torch.cat([torch.randn(BATCH, Z_DIM, device=device, generator=g) for g in rngs])
        with torch.no_grad():
            fake = generator(z)
        loss = per_member(
            lambda r, f: f.mean() - r.mean(), critic(real), critic(fake), members=MEMBERS
        )
        with hooks():
            penalty = constraint.penalty(critic, real, fake)
        if penalty is not None:
            if tuple(penalty.shape) != (MEMBERS,):
                raise MemberMixing(
                    f"a penalty of shape {tuple(penalty.shape)}, not one value per member"
                )
            loss = loss + penalty
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
        with hooks():
            constraint.after_critic_step(critic)
    return critic


def check_architecture_members(make, label: str, z_dim: int, shape, output: str, device) -> None:
    """An architecture declaring ``stackable``: ``MEMBERS`` builds (seeds 0, 1, 2) as one
    stack give each member's own outputs and gradients."""
    if not getattr(make(), "stackable", False):
        return
    pairs = []
    for m in range(MEMBERS):
        torch.manual_seed(m)
        pairs.append(tuple(net.to(device) for net in make().build(z_dim, shape, output)))
    batch = BATCH * getattr(make(), "batch_multiple", 1)
    z = torch.randn(MEMBERS * batch, z_dim, device=device)
    rule = (
        "declares stackable = True, so its networks must run under torch.func.vmap with "
        "functional_call (no out= operations, no data-dependent control flow) and every "
        "build must have the same structure; a module class declaring member_major = True "
        "must compute each sample on its own (no batch-wide statistics or reshapes)"
    )
    try:
        generator = Stacked([g for g, _ in pairs])
        critic = Stacked([c for _, c in pairs])
        x = generator(z)
        scores = critic(x)
        scores.sum().backward()
    except Exception as exc:
        raise ContractError(
            label, f"{rule}; stacked, it raised {type(exc).__name__}: {exc}"
        ) from exc
    for m, (g, c) in enumerate(pairs):
        alone = g(z[m * batch : (m + 1) * batch])
        out = c(alone)
        out.sum().backward()
        n = len(out)
        if not torch.allclose(scores[m * n : (m + 1) * n], out, **TOLERANCE):
            raise ContractError(
                label, f"{rule}; member {m}'s stacked critic scores differ from its own"
            )
        grads = {n: p.grad for n, p in c.named_parameters() if p.grad is not None}
        # rounding noise scales with the largest gradient (a bias before batch norm has a
        # true gradient of 0: what it gets is that noise)
        atol = TOLERANCE["atol"] * max(1.0, max(g.abs().max().item() for g in grads.values()))
        for name, w in zip(critic.param_names, critic.weights, strict=True):
            own = grads.get(name)
            if own is not None and not torch.allclose(
                w.grad[m], own, rtol=TOLERANCE["rtol"], atol=atol
            ):
                raise ContractError(
                    label, f"{rule}; member {m}'s gradient of {name} differs stacked"
                )
