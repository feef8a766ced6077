"""One readable training loop: n_critic critic steps per generator step, constraint hooks,
evaluation every ``eval.every`` generator steps. Seeded, deterministic on CPU, and free of
per-step host syncs: losses accumulate on the device and are read every ``log_every`` steps."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import torch

from harness.evaluation import EvalContext, evaluate
from harness.parts import Samples
from harness.registry import Registry
from harness.suite import OptimizerConfig, RunSpec

log = logging.getLogger("harness")
TRAIN_KEYS = ("loss_critic", "loss_generator", "grad_norm_generator", "penalty", "critic_gap")


@dataclass
class RunResult:
    """What a finished (or diverged) run reports."""

    status: str  # finished | diverged
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    diverged_step: int | None = None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    """Where a run's numbers and checkpoints go; the tracker implements it, tests may pass a
    collector. Without an override, nothing is kept and nothing resumes."""

    def log(self, values: dict[str, float], step: int) -> None: ...

    def log_samples(self, ctx: EvalContext, step: int) -> None: ...

    def save_checkpoint(self, state: dict) -> None: ...

    def load_checkpoint(self) -> dict | None:
        return None


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    registry = registry or Registry(spec.plugins)
    sink = sink or MetricsSink()
    device = resolve_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN picks its fastest kernels
    seed_everything(spec.seed)

    dataset = registry.create("dataset", spec.dataset.name, spec.dataset.params)
    loss = registry.create("loss", spec.loss.name, spec.loss.params)
    constraint = registry.create("constraint", spec.constraint.name, spec.constraint.params)
    metrics = {m.name: registry.create("metric", m.name, m.params) for m in spec.metrics}
    arch = registry.create("architecture", spec.architecture.name, spec.architecture.params)

    data = dataset.load("train", data_dir).x.to(device)
    test = dataset.load("test", data_dir)
    real = Samples(test.x[: spec.eval.samples].to(device), test.y[: spec.eval.samples].to(device))
    generator, critic = arch.build(spec.architecture.z_dim, tuple(data.shape[1:]), loss.output)
    generator, critic = generator.to(device), constraint.wrap_critic(critic.to(device))
    opt_g = make_optimizer(generator.parameters(), spec.optimizer)
    opt_c = make_optimizer(critic.parameters(), spec.optimizer)
    ctx = EvalContext(spec, dataset, generator, critic, loss, real, device, data_dir, data)

    tc, z_dim, n = spec.train, spec.architecture.z_dim, len(data)
    memory = PeakMemory(device)
    forwards: list[int] = []  # critic calls in the first generator step (the loop is static)
    counter = critic.register_forward_pre_hook(lambda *_: forwards.append(1))
    passes_per_step = 0
    totals = torch.zeros(len(TRAIN_KEYS), device=device)
    zero = torch.zeros((), device=device)
    history: dict[str, list[tuple[int, float]]] = {}
    result = RunResult("finished", 0)
    train_seconds, start = 0.0, 0
    if (state := sink.load_checkpoint()) is not None:
        generator.load_state_dict(state["generator"])
        critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"])
        opt_c.load_state_dict(state["opt_c"])
        set_rng_state(state["rng"])
        history, result.metrics = state["history"], state["metrics"]
        train_seconds, start = state["train_seconds"], state["step"]
        passes_per_step = state["passes_per_step"]
        result.steps = start
    amp = autocast(device, tc.precision)
    gen, crit = generator, critic  # what the training forward passes call
    if compile:
        compile_start = time.perf_counter()
        gen, crit = compile_or_eager(
            generator, critic, lambda g, c: _trial_step(g, c, data[: tc.batch_size], z_dim, amp)
        )
        result.metrics["compile_seconds"] = time.perf_counter() - compile_start
        forwards.clear()  # the trial's critic calls are not the loop's
        sink.log({"compile_seconds": result.metrics["compile_seconds"]}, start)
    gen_params = list(generator.parameters())
    saved_at, window_start, window_steps = start, time.perf_counter(), 0

    for step in range(start + 1, tc.steps + 1):
        for _ in range(tc.n_critic):
            real_x = data[torch.randint(0, n, (tc.batch_size,), device=device)]
            with amp:
                with torch.no_grad():
                    fake_x = gen(torch.randn(tc.batch_size, z_dim, device=device))
                real_out, fake_out = crit(real_x).float(), crit(fake_x).float()
                loss_c = loss.critic_loss(real_out, fake_out)
                penalty = constraint.penalty(critic, real_x, fake_x)
                if penalty is not None:
                    loss_c = loss_c + penalty
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
            constraint.after_critic_step(critic)

        critic.requires_grad_(False)  # the generator step needs no critic weight gradients
        with amp:
            loss_g = loss.generator_loss(
                crit(gen(torch.randn(tc.batch_size, z_dim, device=device))).float()
            )
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        grads = [p.grad for p in gen_params if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        opt_g.step()
        critic.requires_grad_(True)

        if step == start + 1:
            counter.remove()
            passes_per_step = len(forwards)
        gap = real_out.detach().mean() - fake_out.detach().mean()
        pen = penalty.detach() if penalty is not None else zero
        totals += torch.stack([loss_c.detach(), loss_g.detach(), grad_norm, pen, gap])
        window_steps += 1

        at_eval = step % spec.eval.every == 0 or step == tc.steps
        if step % tc.log_every == 0 or at_eval:
            means = dict(zip(TRAIN_KEYS, (totals / window_steps).tolist(), strict=True))
            elapsed = time.perf_counter() - window_start
            train_seconds += elapsed
            means["sec_per_step"] = elapsed / window_steps
            totals.zero_()
            result.steps = step
            memory.sample()
            if not all(math.isfinite(v) for v in means.values()):
                result.status, result.diverged_step = "diverged", step
                sink.log({"diverged": 1.0, "diverged_step": float(step)}, step)
                break
            sink.log(means, step)
            _record(history, means, step)
            if progress:
                progress(step, means)
            if at_eval:
                ctx.step = step
                values = evaluate(ctx, metrics)
                sink.log(values, step)
                sink.log_samples(ctx, step)
                _record(history, values, step)
                result.metrics.update(values)
            if at_eval or step - saved_at >= checkpoint_every:
                sink.save_checkpoint(
                    {
                        "step": step,
                        "generator": generator.state_dict(),
                        "critic": critic.state_dict(),
                        "opt_g": opt_g.state_dict(),
                        "opt_c": opt_c.state_dict(),
                        "rng": rng_state(),
                        "history": history,
                        "metrics": dict(result.metrics),
                        "train_seconds": train_seconds,
                        "passes_per_step": passes_per_step,
                    }
                )
                saved_at = step
            window_start, window_steps = time.perf_counter(), 0

    ctx.timings = {
        "train_seconds": train_seconds,
        "steps": result.steps,
        "critic_forwards": passes_per_step * result.steps,
        "peak_memory_mb": memory.peak_mb(),
    }
    summary = {
        "train_seconds": train_seconds,
        "sec_per_step": train_seconds / max(result.steps, 1),
        "diverged": float(result.status == "diverged"),
    }
    for metric in metrics.values():
        summary.update(metric.summarize(ctx, history))
    sink.log(summary, result.steps)
    result.metrics.update(summary)
    return result


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
