"""One readable training loop: n_critic critic steps, then generator_steps generator steps
(alternating, or simultaneous as in PacGAN's code), constraint hooks,
evaluation every ``eval.every`` steps. Seeded, deterministic on CPU, and free of
per-step host syncs: losses accumulate on the device and are read every ``log_every`` steps."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psutil
import torch

from harness.core.errors import HarnessError
from harness.core.parts import Constraint, Loss, Metric
from harness.core.registry import Registry
from harness.core.spec import OptimizerConfig, RunSpec, TrainConfig
from harness.evaluation.context import Context, evaluate, open_context

log = logging.getLogger("harness")
TRAIN_KEYS = ("loss_critic", "loss_generator", "grad_norm_generator", "penalty", "critic_gap")


@dataclass
class RunResult:
    """What a finished (or diverged) run reports, and the loop state a checkpoint restores."""

    status: str  # finished | diverged
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    diverged_step: int | None = None
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict, repr=False)
    train_seconds: float = 0.0
    passes_per_step: int = 0  # critic forward passes per generator step


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_device(name: str) -> torch.device:
    """The device ``--device`` names, if this machine has it; else one :class:`HarnessError`."""
    try:
        device = resolve_device(name)
    except RuntimeError as exc:  # torch's own words for a malformed device string
        raise HarnessError(f"--device {name}: {exc}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise HarnessError(f"--device {name}: this machine has {count} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, precision: str):
    """The context for forward passes: bf16 autocast, or nothing at all for fp32. Backward
    passes and optimiser steps run outside it; parameters and gradients stay fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_or_eager(generator, critic, trial: Callable) -> tuple[torch.nn.Module, ...]:
    """``torch.compile`` both networks and run ``trial(generator, critic)`` with them once
    (compilation is lazy: this is where it fails). On any failure, say so in one line and
    return the eager networks."""
    try:
        with warnings.catch_warnings():  # the compiler's notes (CUDA_HOME, ...): one line below
            warnings.simplefilter("ignore")
            compiled = torch.compile(generator), torch.compile(critic)
            trial(*compiled)
        return compiled
    except Exception as exc:  # compilers fail in many ways; eager always works
        while (inner := getattr(exc, "inner_exception", None) or exc.__cause__) is not None:
            exc = inner  # the compiler's own error rather than dynamo's wrapper
        first = (str(exc).strip().splitlines() or [""])[0]
        log.warning("torch.compile failed, training eagerly: %s: %s", type(exc).__name__, first)
        return generator, critic


def make_optimizer(params, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas or (0.9, 0.999))
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr)


class MetricsSink:
    """Where a run's numbers, files and checkpoints go; the store's run log implements it,
    tests may pass a collector. Without an override, nothing is kept and nothing resumes."""

    def log(self, values: dict[str, float], step: int) -> None: ...

    def log_files(self, files: dict[str, bytes]) -> None:
        """Files rendered at an evaluation (sample grid, value surfaces), by artifact path."""

    def save_checkpoint(self, state: dict) -> None: ...

    def load_checkpoint(self) -> dict | None:
        return None


def rng_state() -> dict:
    """Every RNG stream a run draws from, as tensors and plain numbers only: a checkpoint holds
    nothing that loading with ``weights_only=True`` refuses."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def rng_untouched():
    """Inside, code draws from the global RNG streams as it likes; after it, every stream
    (torch, CUDA, numpy, Python) is where it was."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


class PeakMemory:
    """Peak memory of a run: the CUDA allocator's peak on GPU, sampled process RSS on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.peak = 0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.device = device

    def sample(self) -> None:
        if not self.cuda:
            self.peak = max(self.peak, psutil.Process().memory_info().rss)

    def peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        self.sample()
        return self.peak / 2**20


def train(
    spec: RunSpec,
    *,
    registry: Registry | None = None,
    device: str | torch.device = "auto",
    data_dir: Path | None = None,
    sink: MetricsSink | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    checkpoint_every: int = 500,
    compile: bool = False,
) -> RunResult:
    """Train one (strategy, seed) run and evaluate it; returns the final metrics.

    The full training state is checkpointed through ``sink`` at every evaluation and at least
    every ``checkpoint_every`` steps (at logging points), and a run resumes from the sink's
    checkpoint when there is one: on CPU the resumed run equals an uninterrupted one bit for bit.

    ``spec.train.precision`` bf16 autocasts the forward passes. ``compile`` runs the training
    forward passes through ``torch.compile`` (the penalty's and the evaluation's use the eager
    critic: compiled graphs have no double backward); it falls back to eager if compiling fails.
    """
    sink = sink or MetricsSink()
    device = resolve_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN picks its fastest kernels
    seed_everything(spec.seed)
    parts = load_parts(spec, registry or Registry(spec.plugins), device, data_dir)
    tc, amp, memory = spec.train, autocast(device, spec.train.precision), PeakMemory(device)
    forwards: list[int] = []  # critic calls in the first generator step (the loop is static)
    counter = parts.critic.register_forward_pre_hook(lambda *_: forwards.append(1))
    run = restore(parts, sink.load_checkpoint())
    gen, crit = parts.generator, parts.critic  # what the training forward passes call
    if compile:
        gen, crit = compile_parts(parts, run, amp, sink)
        forwards.clear()  # the trial's critic calls are not the loop's
    start, saved_at, window = run.steps, run.steps, Window(device)

    for step in range(start + 1, tc.steps + 1):
        critic_out, loss_g, grad_norm = one_step(parts, gen, crit, amp, tc)
        if step == start + 1:
            counter.remove()
            run.passes_per_step = len(forwards)
        window.add(critic_out, loss_g, grad_norm)

        at_eval = step % spec.eval.every == 0 or step == tc.steps
        if step % tc.log_every == 0 or at_eval:
            memory.sample()
            if not log_window(window, run, step, sink, progress, final=step == tc.steps):
                break  # diverged
            if at_eval:
                evaluate_at(parts, run, step, sink)
            if at_eval or step - saved_at >= checkpoint_every:
                sink.save_checkpoint(checkpoint_state(parts, run))
                saved_at = step
            window.reset()

    run.metrics.update(summarize(parts, run, memory, sink))
    return run


@dataclass
class Parts:
    """What one run trains and measures, built from its spec."""

    loss: Loss
    constraint: Constraint
    metrics: dict[str, Metric]
    generator: torch.nn.Module
    critic: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_c: torch.optim.Optimizer
    data: torch.Tensor  # the training split, on the device
    ctx: Context

    @property
    def z_dim(self) -> int:
        return self.ctx.spec.architecture.z_dim


class CriticStep(NamedTuple):
    """The last critic step's outputs, kept for the logged means."""

    loss: torch.Tensor
    penalty: torch.Tensor | None
    real_out: torch.Tensor
    fake_out: torch.Tensor


def load_parts(
    spec: RunSpec, registry: Registry, device: torch.device, data_dir, like: Parts | None = None
) -> Parts:
    """Create the spec's plugins, load the data and build the networks and optimisers. The
    networks are the first to draw from the run's seed: whatever plugins, data and the
    evaluation context draw (the evaluator loads once per process) leaves the streams as
    they were. ``like``: a run on the same data (a stacked group's first member), whose
    training and evaluation samples are shared instead of loaded again."""
    with rng_untouched():
        dataset = registry.create("dataset", spec.dataset.name, spec.dataset.params)
        loss = registry.create("loss", spec.loss.name, spec.loss.params)
        constraint = registry.create("constraint", spec.constraint.name, spec.constraint.params)
        metrics = {m.name: registry.create("metric", m.name, m.params) for m in spec.metrics}
        arch = registry.create("architecture", spec.architecture.name, spec.architecture.params)
        data = like.data if like else dataset.load("train", data_dir).x.to(device)
        test = like.ctx.real if like else None
        ctx = open_context(
            dataset, device, samples=spec.eval.samples, data_dir=data_dir, train=data, test=test,
            spec=spec,
        )  # fmt: skip
    generator, critic = arch.build(spec.architecture.z_dim, tuple(data.shape[1:]), loss.output)
    generator, critic = generator.to(device), constraint.wrap_critic(critic.to(device))
    opt_g = make_optimizer(generator.parameters(), spec.optimizer)
    opt_c = make_optimizer(critic.parameters(), spec.optimizer)
    ctx.generator, ctx.critic, ctx.loss = generator, critic, loss
    return Parts(loss, constraint, metrics, generator, critic, opt_g, opt_c, data, ctx)


def restore(parts: Parts, state: dict | None) -> RunResult:
    """Load a checkpoint into ``parts`` (weights, optimisers, RNG streams); the returned
    result carries its step, history, metrics and timings. ``None``: a fresh run."""
    if state is None:
        return RunResult("finished", 0)
    parts.generator.load_state_dict(state["generator"])
    parts.critic.load_state_dict(state["critic"])
    parts.opt_g.load_state_dict(state["opt_g"])
    parts.opt_c.load_state_dict(state["opt_c"])
    set_rng_state(state["rng"])
    return RunResult(
        "finished",
        state["step"],
        state["metrics"],
        history=state["history"],
        train_seconds=state["train_seconds"],
        passes_per_step=state["passes_per_step"],
    )


def checkpoint_state(parts: Parts, run: RunResult) -> dict:
    """Everything :func:`restore` needs to continue bit for bit."""
    return {
        "step": run.steps,
        "generator": parts.generator.state_dict(),
        "critic": parts.critic.state_dict(),
        "opt_g": parts.opt_g.state_dict(),
        "opt_c": parts.opt_c.state_dict(),
        "rng": rng_state(),
        "history": run.history,
        "metrics": dict(run.metrics),
        "train_seconds": run.train_seconds,
        "passes_per_step": run.passes_per_step,
    }


def compile_parts(parts: Parts, run: RunResult, amp, sink: MetricsSink):
    """The compiled (or, failing that, eager) networks; logs ``compile_seconds``."""
    start = time.perf_counter()
    batch = parts.data[: parts.ctx.spec.train.batch_size]
    nets = compile_or_eager(
        parts.generator, parts.critic, lambda g, c: _trial_step(g, c, batch, parts.z_dim, amp)
    )
    run.metrics["compile_seconds"] = time.perf_counter() - start
    sink.log({"compile_seconds": run.metrics["compile_seconds"]}, run.steps)
    return nets


def one_step(parts: Parts, gen, crit, amp, tc: TrainConfig):
    """One training step: ``n_critic`` critic updates, then ``generator_steps`` generator
    updates (none: a fixed generator, gradient norm 0); with simultaneous updates the last
    critic update and the first generator update are one :func:`joint_step`. Returns the last
    critic step and generator loss and norm."""
    joint = tc.updates == "simultaneous"
    for _ in range(tc.n_critic - joint):
        critic_out = critic_step(parts, gen, crit, amp, tc.batch_size)
    if joint:
        critic_out, loss_g, grad_norm = joint_step(parts, gen, crit, amp, tc.batch_size)
    if not tc.generator_steps:  # a fixed generator: its loss at the last critic step's fakes
        with torch.no_grad():
            return critic_out, parts.loss.generator_loss(critic_out.fake_out), torch.zeros(())
    for _ in range(tc.generator_steps - joint):
        loss_g, grad_norm = generator_step(parts, gen, crit, amp, tc.batch_size)
    return critic_out, loss_g, grad_norm


def critic_step(parts: Parts, gen, crit, amp, batch_size: int) -> CriticStep:
    """One critic update on a random real batch and a fresh fake batch, then the
    constraint's projection."""
    device = parts.data.device
    real_x = parts.data[torch.randint(0, len(parts.data), (batch_size,), device=device)]
    with amp:
        with torch.no_grad():
            fake_x = gen(torch.randn(batch_size, parts.z_dim, device=device))
        real_out, fake_out = crit(real_x).float(), crit(fake_x).float()
        loss_c = parts.loss.critic_loss(real_out, fake_out)
        penalty = parts.constraint.penalty(parts.critic, real_x, fake_x)
        if penalty is not None:
            loss_c = loss_c + penalty
    parts.opt_c.zero_grad(set_to_none=True)
    loss_c.backward()
    parts.opt_c.step()
    parts.constraint.after_critic_step(parts.critic)
    return CriticStep(loss_c, penalty, real_out, fake_out)


def generator_step(parts: Parts, gen, crit, amp, batch_size: int):
    """One generator update through the frozen critic; returns its loss and gradient norm."""
    z = torch.randn(batch_size, parts.z_dim, device=parts.data.device)
    parts.critic.requires_grad_(False)  # the generator step needs no critic weight gradients
    with amp:
        loss_g = parts.loss.generator_loss(crit(gen(z)).float())
    parts.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    grads = [p.grad for p in parts.generator.parameters() if p.grad is not None]
    grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    parts.opt_g.step()
    parts.critic.requires_grad_(True)
    return loss_g, grad_norm


def joint_step(parts: Parts, gen, crit, amp, batch_size: int):
    """One simultaneous update (PacGAN's grid code): both losses from one real and one fake
    batch, both gradients at the current weights, then both optimisers step and the
    constraint projects. Returns the critic step and the generator's loss and gradient norm."""
    device = parts.data.device
    real_x = parts.data[torch.randint(0, len(parts.data), (batch_size,), device=device)]
    with amp:
        fake_x = gen(torch.randn(batch_size, parts.z_dim, device=device))
        real_out, fake_out = crit(real_x).float(), crit(fake_x).float()
        loss_c = parts.loss.critic_loss(real_out, fake_out)
        penalty = parts.constraint.penalty(parts.critic, real_x, fake_x.detach())
        if penalty is not None:
            loss_c = loss_c + penalty
        loss_g = parts.loss.generator_loss(fake_out)
    critic_params = [p for p in parts.critic.parameters() if p.requires_grad]
    gen_params = [p for p in parts.generator.parameters() if p.requires_grad]
    critic_grads = torch.autograd.grad(loss_c, critic_params, retain_graph=True)
    gen_grads = torch.autograd.grad(loss_g, gen_params, allow_unused=True)
    for p, g in zip(critic_params + gen_params, critic_grads + gen_grads, strict=True):
        p.grad = g
    grads = [g for g in gen_grads if g is not None]
    grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    parts.opt_c.step()
    parts.opt_g.step()
    parts.constraint.after_critic_step(parts.critic)
    return CriticStep(loss_c, penalty, real_out, fake_out), loss_g, grad_norm


class Window:
    """The training losses between two logging points, summed on the device (no host sync)
    and read once at the logging point, with the window's wall time."""

    def __init__(self, device: torch.device):
        self.totals = torch.zeros(len(TRAIN_KEYS), device=device)
        self.zero = torch.zeros((), device=device)
        self.reset()

    def reset(self) -> None:
        self.start, self.steps = time.perf_counter(), 0

    def add(self, critic: CriticStep, loss_g: torch.Tensor, grad_norm: torch.Tensor) -> None:
        gap = critic.real_out.detach().mean() - critic.fake_out.detach().mean()
        pen = critic.penalty.detach() if critic.penalty is not None else self.zero
        self.totals += torch.stack([critic.loss.detach(), loss_g.detach(), grad_norm, pen, gap])
        self.steps += 1

    def read(self) -> tuple[dict[str, float], float]:
        """The window's means (with ``sec_per_step``) and its seconds; starts a new sum."""
        means = dict(zip(TRAIN_KEYS, (self.totals / self.steps).tolist(), strict=True))
        elapsed = time.perf_counter() - self.start
        means["sec_per_step"] = elapsed / self.steps
        self.totals.zero_()
        return means, elapsed


def log_window(window: Window, run: RunResult, step: int, sink: MetricsSink, progress, final):
    """Log the window's means, or record the run as diverged when one is not finite.
    Returns whether training goes on."""
    means, elapsed = window.read()
    run.train_seconds += elapsed
    run.steps = step
    if not all(math.isfinite(v) for v in means.values()):
        run.status, run.diverged_step = "diverged", step
        sink.log({"diverged": 1.0, "diverged_step": float(step)}, step)
        return False
    # at the last step the summary logs the run's sec_per_step; one value per step
    sink.log({k: v for k, v in means.items() if not (final and k == "sec_per_step")}, step)
    _record(run.history, means, step)
    if progress:
        progress(step, means)
    return True


def evaluate_at(parts: Parts, run: RunResult, step: int, sink: MetricsSink) -> None:
    """Run every metric at this step; log the values and the files rendered (sample grid,
    value surfaces). Metrics may draw random numbers: training goes on from the streams as
    they were, so the metrics listed and ``eval.every`` never change what trains."""
    parts.ctx.step = step
    with rng_untouched():
        values = evaluate(parts.ctx, parts.metrics)
    sink.log(values, step)
    sink.log_files(parts.ctx.artifacts)
    _record(run.history, values, step)
    run.metrics.update(values)


def summarize(parts: Parts, run: RunResult, memory: PeakMemory, sink: MetricsSink) -> dict:
    """The run's summary (timings, divergence, each metric's ``summarize``), logged at its
    last step."""
    parts.ctx.timings = {
        "train_seconds": run.train_seconds,
        "steps": run.steps,
        "critic_forwards": run.passes_per_step * run.steps,
        "peak_memory_mb": memory.peak_mb(),
    }
    summary = {
        "train_seconds": run.train_seconds,
        "sec_per_step": run.train_seconds / max(run.steps, 1),
        "diverged": float(run.status == "diverged"),
    }
    for metric in parts.metrics.values():
        summary.update(metric.summarize(parts.ctx, run.history))
    sink.log(summary, run.steps)
    return summary


def _trial_step(generator, critic, x, z_dim, amp) -> None:
    """One step's forward and backward passes (critic, then generator through the frozen
    critic) without optimiser steps; RNG, buffers and gradients are left as they were."""
    saved = copy.deepcopy((generator.state_dict(), critic.state_dict()))
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            z = torch.randn(len(x), z_dim, device=x.device)
            with amp:
                with torch.no_grad():
                    fake = generator(z)
                out = critic(x).float().mean() - critic(fake).float().mean()
            out.backward()
            critic.requires_grad_(False)
            with amp:
                out = critic(generator(z)).float().mean()
            out.backward()
    finally:
        critic.requires_grad_(True)
        for module, state in zip((generator, critic), saved, strict=True):
            module.load_state_dict(state)
            module.zero_grad(set_to_none=True)


def _record(history: dict[str, list[tuple[int, float]]], values: dict[str, float], step: int):
    for key, value in values.items():
        history.setdefault(key, []).append((step, value))
