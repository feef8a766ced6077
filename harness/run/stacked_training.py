"""Train M runs as one stacked model (:mod:`harness.run.members`): the same loop as
:func:`harness.run.trainer.train`, each step once for all members.

Each member is still its run: built, seeded and restored exactly as alone (its networks drawn
from its seed, then its own random stream for batches, noise and the constraint's draws, so
what it draws does not depend on its group), its own optimiser (one parameter group per
member: ``torch.optim``'s own update, :mod:`harness.run.member_optimizers`), its own sink,
checkpoints in the per-run format, evaluation on its unstacked networks and its own summary.
A member that diverges is recorded and frozen; the others go on. Stacked and per-run training
differ only in the order of floating-point sums (like a thread count): same run key; the
execution is logged (``execution``: ``stacked:M``)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from harness.core.parts import Constraint
from harness.core.registry import Registry
from harness.core.spec import RunSpec
from harness.run.member_optimizers import member_optimizer
from harness.run.members import MemberMixing, Members, Stacked, per_member
from harness.run.trainer import (
    TRAIN_KEYS,
    MetricsSink,
    Parts,
    PeakMemory,
    RunResult,
    _record,
    checkpoint_state,
    evaluate_at,
    load_parts,
    one_step,
    resolve_device,
    restore,
    rng_state,
    seed_everything,
    summarize,
)


@dataclass
class Member:
    """One run of a group: its spec, parts (its own unstacked networks), result and sink."""

    spec: RunSpec
    parts: Parts
    run: RunResult
    sink: MetricsSink
    rng: torch.Generator
    streams: dict  # the global streams as the run alone would have them (numpy, Python, ...)
    live: bool = True
    progress: Callable[[int, dict[str, float]], None] | None = None


def train_stacked(
    specs: Sequence[RunSpec],
    sinks: Sequence[MetricsSink],
    *,
    registry: Registry | None = None,
    device: str | torch.device = "auto",
    data_dir: Path | None = None,
    checkpoint_every: int = 500,
    progress: Sequence | None = None,
) -> list[RunResult]:
    """Train ``specs`` (runs that may differ in what :func:`harness.run.grouping.group_key`
    leaves out) as one stacked model; each member logs to its sink and resumes from its
    checkpoint. Members restored at different steps train as separate stacks, one after
    another. ``progress``: each member's step callback, or None."""
    device = resolve_device(device)
    registry = registry or Registry(specs[0].plugins)
    progress = progress or [None] * len(specs)
    members = load_members(specs, sinks, registry, device, data_dir)
    for member, callback in zip(members, progress, strict=True):
        member.progress = callback
    by_step: dict[int, list[Member]] = {}
    for member in members:
        by_step.setdefault(member.run.steps, []).append(member)
    for group in by_step.values():
        train_group(group, device, checkpoint_every)
    return [member.run for member in members]


def load_members(specs, sinks, registry, device, data_dir) -> list[Member]:
    """Every member, loading the data once (the group shares its dataset)."""
    members: list[Member] = []
    for spec, sink in zip(specs, sinks, strict=True):
        like = members[0].parts if members else None
        members.append(load_member(spec, sink, registry, device, data_dir, like))
    return members


def load_member(spec, sink, registry, device, data_dir, like: Parts | None = None) -> Member:
    """Build and restore one member as :func:`train` would; its random stream continues from
    where the run alone would draw its first batch."""
    seed_everything(spec.seed)
    parts = load_parts(spec, registry, device, data_dir, like)
    run = restore(parts, sink.load_checkpoint())
    rng = torch.Generator(device)
    rng.set_state(
        torch.get_rng_state() if device.type == "cpu" else torch.cuda.get_rng_state(device)
    )
    return Member(spec, parts, run, sink, rng, rng_state())


class Group:
    """The stacked networks and optimisers of a group of members."""

    def __init__(self, members: list[Member]):
        self.members = members
        first = members[0].parts
        self.loss, self.constraint, self.data = first.loss, first.constraint, first.data
        self.z_dim, self.count = first.z_dim, len(members)
        self.generator = Stacked([m.parts.generator for m in members])
        self.critic = Stacked([m.parts.critic for m in members])
        self.opt_g = member_optimizer(self.generator, [m.parts.opt_g for m in members])
        self.opt_c = member_optimizer(self.critic, [m.parts.opt_c for m in members])
        self.rngs = [m.rng for m in members]
        self.critic_updates = [
            m.spec.train.n_critic - (m.spec.train.updates == "simultaneous") for m in members
        ]  # critic-only updates per step (with simultaneous updates the last is joint)
        self.elementwise = getattr(self.constraint, "members", None) == "elementwise"
        projection = type(self.constraint).after_critic_step
        self.projects = projection is not Constraint.after_critic_step  # clipping, ...
        self.phase = "critic"  # which update calls the critic: critic, joint or generator

    def chosen(self, round: int | None = None) -> list[int] | None:
        """The members that compute (None: all): the live ones, and in critic round
        ``round`` those that take more critic updates than that."""
        on = [
            m.live and (round is None or n > round)
            for m, n in zip(self.members, self.critic_updates, strict=True)
        ]
        return None if all(on) else [i for i, yes in enumerate(on) if yes]

    def rounds(self) -> int:
        """The critic-only rounds of a step: the most critic updates a live member takes."""
        live = zip(self.critic_updates, self.members, strict=True)
        return max((n for n, m in live if m.live), default=0)

    @contextlib.contextmanager
    def only(self, chosen: list[int] | None):
        """Both networks compute the members ``chosen`` only (:meth:`Stacked.only`)."""
        with self.critic.only(chosen), self.generator.only(chosen):
            yield

    def streams(self, chosen: list[int] | None) -> list[torch.Generator]:
        return self.rngs if chosen is None else [self.rngs[i] for i in chosen]

    def hook_context(self, chosen: list[int] | None, rows: int):
        """The context of the constraint's hooks: :class:`Members` for an ``elementwise``
        one; a ``native`` one handles the stack itself."""
        return Members(self.streams(chosen), rows) if self.elementwise else nullcontext()

    def project(self, chosen: list[int] | None, rows: int) -> None:
        """The constraint's projection after a critic update, on the members ``chosen``
        only; nothing to do (nor to save and restore) for a constraint without one."""
        if not self.projects:
            return
        with self.critic.keeping(chosen), self.hook_context(chosen, rows):
            self.constraint.after_critic_step(self.critic)

    def draw_real(self, batch: int, chosen: list[int] | None = None) -> torch.Tensor:
        """A real batch per member ``chosen``, each from its own stream."""
        n, device = len(self.data), self.data.device
        idx = [
            torch.randint(0, n, (batch,), device=device, generator=g) for g in self.streams(chosen)
        ]
        return self.data[torch.cat(idx)]

    def draw_z(self, batch: int, chosen: list[int] | None = None) -> torch.Tensor:
        device, z = self.data.device, self.z_dim
        return torch.cat(
            [torch.randn(batch, z, device=device, generator=g) for g in self.streams(chosen)]
        )

    def size(self, chosen: list[int] | None) -> int:
        return self.count if chosen is None else len(chosen)

    def full(self, values: torch.Tensor | None, chosen: list[int] | None):
        """A vector over the chosen members as one over all (zeros for the others),
        detached; None stays None (no penalty)."""
        if values is None or chosen is None:
            return None if values is None else values.detach()
        out = values.new_zeros(self.count)
        out[chosen] = values.detach()
        return out

    def unstack(self, i: int) -> None:
        """Member i's current weights into its own (plain) networks, for evaluation."""
        parts = self.members[i].parts
        parts.generator.load_state_dict(self.generator.member(i))
        parts.critic.load_state_dict(self.critic.member(i))

    def checkpoint(self, i: int) -> dict:
        """Member i's per-run checkpoint (its networks unstacked already): its optimisers'
        state exported into its own, then :func:`member_checkpoint`."""
        parts = self.members[i].parts
        self.opt_g.export(i, parts.opt_g)
        self.opt_c.export(i, parts.opt_c)
        return member_checkpoint(self.members[i])


def train_group(members: list[Member], device: torch.device, checkpoint_every: int) -> None:
    """The loop of :func:`harness.run.trainer.train` for members at the same step."""
    spec, group = members[0].spec, Group(members)
    tc, memory = spec.train, PeakMemory(device)
    forwards: list[str] = []  # the phase of each critic call in the first step
    counter = group.critic.register_forward_pre_hook(lambda *_: forwards.append(group.phase))
    start, saved_at = members[0].run.steps, members[0].run.steps
    window = MemberWindow(group.count, device)
    rounds = max(group.critic_updates)
    for step in range(start + 1, tc.steps + 1):
        window.add(*stacked_step(group, tc))
        if step == start + 1:
            counter.remove()
            for m in members:
                m.run.passes_per_step = passes(forwards, m.spec.train, rounds)
        at_eval = step % spec.eval.every == 0 or step == tc.steps
        if step % tc.log_every == 0 or at_eval:
            memory.sample()
            log_members(group, window, step, memory, final=step == tc.steps)
            if not any(m.live for m in members):
                return
            save = at_eval or step - saved_at >= checkpoint_every
            for i, m in enumerate(members):
                if not m.live or not save:  # evaluation points are checkpoints too
                    continue
                group.unstack(i)
                if at_eval:
                    evaluate_at(m.parts, m.run, step, m.sink)
                m.sink.save_checkpoint(group.checkpoint(i))
            if save:
                saved_at = step
            window.reset()
    for i, m in enumerate(members):
        if m.live:
            group.unstack(i)
            m.run.metrics.update(summarize(m.parts, m.run, memory, m.sink))


def member_checkpoint(member: Member) -> dict:
    """A per-run checkpoint of the member (its networks unstacked first), which resumes it
    stacked or alone: the streams are the member's (training draws from its generator only;
    the others are as they were when it was built)."""
    state = checkpoint_state(member.parts, member.run)
    streams = dict(member.streams)
    if member.rng.device.type == "cuda":
        cuda = list(streams["cuda"])
        cuda[member.rng.device.index or 0] = member.rng.get_state()
        streams["cuda"] = cuda
    else:
        streams["torch"] = member.rng.get_state()
    state["rng"] = streams
    return state


def passes(forwards: list[str], tc, rounds: int) -> int:
    """A member's critic calls per step, from the calls of the stack's first step: its share
    of the critic-only rounds (it takes part in its first ``n_critic`` of them), the rest."""
    joint = tc.updates == "simultaneous"
    per_round = forwards.count("critic") // max(rounds, 1)
    return per_round * (tc.n_critic - joint) + len(forwards) - forwards.count("critic")


class CriticRound(NamedTuple):
    """Each member's last critic update of a step, as vectors over members: loss (with the
    penalty), penalty (zeros without one), mean real minus mean fake score, and the generator
    loss at that update's fakes (what a fixed generator logs)."""

    loss: torch.Tensor
    penalty: torch.Tensor | None
    gap: torch.Tensor
    fixed_generator_loss: torch.Tensor


def stacked_step(group: Group, tc):
    """:func:`harness.run.trainer.one_step` for the stack: the critic-only rounds, member m
    computing in its first ``critic_updates[m]`` of them only (with simultaneous updates,
    where members share n_critic, then a :func:`joint_step`), then the generator updates;
    members that diverged compute no more. Returns the members' last critic round,
    generator losses and gradient norms (vectors over all members)."""
    joint = tc.updates == "simultaneous"
    last = None
    for k in range(group.rounds()):
        chosen = group.chosen(k)
        now = critic_step(group, tc.batch_size, chosen)
        last = now if last is None else merge(last, now, chosen)
    if joint:
        last, loss_g, grad_norm = joint_step(group, tc.batch_size)
    if not tc.generator_steps:
        zeros = torch.zeros(group.count, device=last.loss.device)
        return last, last.fixed_generator_loss, zeros
    for _ in range(tc.generator_steps - joint):
        loss_g, grad_norm = generator_step(group, tc.batch_size)
    return last, loss_g, grad_norm


def merge(last: CriticRound, now: CriticRound, chosen: list[int] | None) -> CriticRound:
    """``last`` with the chosen members' values replaced by ``now``'s."""
    if chosen is None:
        return now
    mask = torch.zeros(len(now.loss), dtype=torch.bool, device=now.loss.device)
    mask[chosen] = True
    pick = lambda a, b: None if a is None else torch.where(mask, b, a)  # noqa: E731
    return CriticRound(*(pick(a, b) for a, b in zip(last, now, strict=True)))


def critic_step(group: Group, batch: int, chosen: list[int] | None) -> CriticRound:
    """One critic update of the members ``chosen`` (None: all); the others draw nothing,
    compute nothing and keep their weights, buffers and optimiser state."""
    group.phase, count = "critic", group.size(chosen)
    with group.only(chosen):
        real_x = group.draw_real(batch, chosen)
        with torch.no_grad():
            fake_x = group.generator(group.draw_z(batch, chosen))
        real_out, fake_out = group.critic(real_x), group.critic(fake_x)
        loss = per_member(group.loss.critic_loss, real_out, fake_out, members=count)
        with group.hook_context(chosen, len(real_x)):
            penalty = group.constraint.penalty(group.critic, real_x, fake_x)
        if penalty is not None:
            loss = loss + check_penalty(group, penalty, count)
        group.opt_c.zero_grad()
        loss.sum().backward()
        group.opt_c.step(chosen)
        group.project(chosen, len(real_x))
    with torch.no_grad():
        fixed = per_member(group.loss.generator_loss, fake_out, members=count)
        gap = member_means(real_out, count) - member_means(fake_out, count)
    return CriticRound(*(group.full(v, chosen) for v in (loss, penalty, gap, fixed)))


def member_means(x: torch.Tensor, count: int) -> torch.Tensor:
    return x.detach().unflatten(0, (count, -1)).flatten(1).mean(1)


def generator_step(group: Group, batch: int):
    group.phase, chosen = "generator", group.chosen()
    count = group.size(chosen)
    with group.only(chosen):
        z = group.draw_z(batch, chosen)
        group.critic.requires_grad_(False)
        out = group.critic(group.generator(z))
        loss = per_member(group.loss.generator_loss, out, members=count)
        group.opt_g.zero_grad()
        loss.sum().backward()
    grads = [p.grad.flatten(1) for p in group.generator.weights if p.grad is not None]
    grad_norm = torch.cat(grads, dim=1).norm(dim=1)
    group.opt_g.step(chosen)
    group.critic.requires_grad_(True)
    return group.full(loss, chosen), grad_norm


def joint_step(group: Group, batch: int):
    """:func:`harness.run.trainer.joint_step` for the stack: both losses from one batch per
    member, both gradients at the current weights, then both updates and the projection."""
    group.phase, chosen = "joint", group.chosen()
    count = group.size(chosen)
    with group.only(chosen):
        real_x = group.draw_real(batch, chosen)
        fake_x = group.generator(group.draw_z(batch, chosen))
        real_out, fake_out = group.critic(real_x), group.critic(fake_x)
        loss_c = per_member(group.loss.critic_loss, real_out, fake_out, members=count)
        with group.hook_context(chosen, len(real_x)):
            penalty = group.constraint.penalty(group.critic, real_x, fake_x.detach())
        if penalty is not None:
            loss_c = loss_c + check_penalty(group, penalty, count)
        loss_g = per_member(group.loss.generator_loss, fake_out, members=count)
        critic_w, gen_w = list(group.critic.weights), list(group.generator.weights)
        critic_grads = torch.autograd.grad(loss_c.sum(), critic_w, retain_graph=True)
        gen_grads = torch.autograd.grad(loss_g.sum(), gen_w, allow_unused=True)
        for w, g in zip(critic_w + gen_w, critic_grads + gen_grads, strict=True):
            w.grad = g
        grads = [g.flatten(1) for g in gen_grads if g is not None]
        grad_norm = torch.cat(grads, dim=1).norm(dim=1)
        group.opt_c.step(chosen)
        group.opt_g.step(chosen)
        group.project(chosen, len(real_x))
    with torch.no_grad():
        gap = member_means(real_out, count) - member_means(fake_out, count)
    critic = CriticRound(*(group.full(v, chosen) for v in (loss_c, penalty, gap, loss_g)))
    return critic, critic.fixed_generator_loss, grad_norm


def check_penalty(group: Group, penalty: torch.Tensor, count: int) -> torch.Tensor:
    """The penalty, which must be one value per member computing."""
    if tuple(penalty.shape) != (count,):
        raise MemberMixing(
            f"the penalty of {type(group.constraint).__name__} has shape "
            f"{tuple(penalty.shape)}, not one value per member ({count})"
        )
    return penalty


class MemberWindow:
    """:class:`harness.run.trainer.Window` per member: sums on the device, read at logging."""

    def __init__(self, count: int, device: torch.device):
        self.totals = torch.zeros(count, len(TRAIN_KEYS), device=device)
        self.reset()

    def reset(self) -> None:
        self.start, self.steps = time.perf_counter(), 0

    def add(self, critic: CriticRound, loss_g, grad_norm) -> None:
        pen = critic.penalty if critic.penalty is not None else torch.zeros_like(critic.gap)
        self.totals += torch.stack([critic.loss, loss_g, grad_norm, pen, critic.gap], 1)
        self.steps += 1

    def read(self) -> tuple[list[dict[str, float]], float]:
        """Each member's means; the window's seconds are shared: each member's ``sec_per_step``
        is its share (the group's time over its members)."""
        elapsed = time.perf_counter() - self.start
        rows = (self.totals / self.steps).tolist()
        self.totals.zero_()
        share = elapsed / len(rows)
        return [
            dict(zip(TRAIN_KEYS, r, strict=True)) | {"sec_per_step": share / self.steps}
            for r in rows
        ], share


def log_members(group: Group, window: MemberWindow, step: int, memory, final: bool) -> None:
    """Each live member's window means, or its divergence: recorded, summarised and frozen."""
    rows, share = window.read()
    for i, (m, means) in enumerate(zip(group.members, rows, strict=True)):
        if not m.live:
            continue
        m.run.train_seconds += share
        m.run.steps = step
        if not all(math.isfinite(v) for v in means.values()):
            m.run.status, m.run.diverged_step, m.live = "diverged", step, False
            m.sink.log({"diverged": 1.0, "diverged_step": float(step)}, step)
            group.opt_c.freeze(i)
            group.opt_g.freeze(i)
            group.unstack(i)
            m.run.metrics.update(summarize(m.parts, m.run, memory, m.sink))
            continue
        m.sink.log({k: v for k, v in means.items() if not (final and k == "sec_per_step")}, step)
        _record(m.run.history, means, step)
        if m.progress:
            m.progress(step, means)


def trial(specs: Sequence[RunSpec], registry: Registry, device, data_dir, steps: int = 3) -> dict:
    """Whether stacking ``specs`` pays here: seconds for one training step of the runs alone,
    one after another, and of the stack, each the fastest of ``steps`` after a warm-up. Runs
    alone that differ only in seed or optimiser settings take the same time, so one run per
    critic-step count is timed (a sweep's members differ in it). Builds its own members:
    nothing is logged and training starts afresh after."""
    device = resolve_device(device)
    members = load_members(specs, [MetricsSink()] * len(specs), registry, device, data_dir)
    per_run, timed = 0.0, {}
    for member in members:
        tc, parts = member.spec.train, member.parts
        if tc.n_critic not in timed:
            alone = lambda p=parts, tc=tc: one_step(p, p.generator, p.critic, nullcontext(), tc)  # noqa: E731
            timed[tc.n_critic] = seconds_per_step(alone, steps, device)
        per_run += timed[tc.n_critic]
    group = Group(members)
    stacked = seconds_per_step(lambda: stacked_step(group, specs[0].train), steps, device)
    return {"per_run_s": per_run, "stacked_s": stacked, "stack": stacked < STACK_MARGIN * per_run}


STACK_MARGIN = 0.9  # stack only when the trial says at least 10 % faster: trials are noisy


def seconds_per_step(step, steps: int, device: torch.device) -> float:
    """Seconds of the fastest of ``steps`` calls of ``step`` after a warm-up call: the
    fastest, because what slows a call (the other worker, the system) is not the step's own
    cost, and both sides of a trial are timed alike."""
    step()  # warm-up: allocations, first-call costs
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)
