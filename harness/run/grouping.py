"""Which runs train together as one stacked model (:mod:`harness.run.stacked_training`), and
whether that pays on this machine.

Runs stack when their architecture declares ``stackable``, their constraint declares
``members`` and they agree on everything but seed, strategy name, sweep setting, optimiser
learning rate and betas, and the number of critic updates per step (alternating updates
only); groups hold at most
``--max-members`` runs. ``train.stack: auto`` (the default) stacks a group only where a short
trial measured it faster than training its runs one after another; the verdict is remembered
per machine and configuration in the cache (``stacking.json``). ``--stack`` stacks without
measuring, ``--no-stack`` (or ``train.stack: off``) never stacks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from harness.core.registry import Registry
from harness.core.spec import RunSpec

MAX_MEMBERS = {"cpu": 16, "cuda": 64}  # a group's default size limit by device type
VARYING = ("seed", "strategy", "setting", "sweep")  # what members may differ in, besides:
VARYING_OPTIMIZER = ("lr", "betas")
VARYING_TRAIN = ("n_critic", "stack")


def default_max_members(device: str) -> int:
    return MAX_MEMBERS["cuda" if device.startswith("cuda") else "cpu"]


def refusal(spec: RunSpec, registry: Registry, compile: bool = False) -> str | None:
    """Why ``spec`` cannot train stacked, or None when it can."""
    arch = registry.get("architecture", spec.architecture.name).cls
    constraint = registry.get("constraint", spec.constraint.name).cls
    if not getattr(arch, "stackable", False):
        return f"architecture {spec.architecture.name!r} does not declare stackable"
    if getattr(constraint, "members", None) not in ("elementwise", "native"):
        return f"constraint {spec.constraint.name!r} declares no members support"
    if spec.train.precision != "fp32" or compile:
        return "bf16 and --compile train per run"
    return None


def group_key(spec: RunSpec) -> str:
    """What members of one group share: the run's config without what may vary."""
    config = spec.config
    for name in VARYING:
        config.pop(name, None)
    for name in VARYING_OPTIMIZER:
        config["optimizer"].pop(name, None)
    for name in VARYING_TRAIN:
        if not (name == "n_critic" and spec.train.updates == "simultaneous"):
            config["train"].pop(name, None)  # simultaneous updates: members share n_critic
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def plan_groups(
    specs: Sequence[RunSpec],
    registry: Registry,
    *,
    stack: str | None,
    max_members: int,
    workers: int = 1,
    compile: bool = False,
) -> list[tuple[RunSpec, ...]]:
    """``specs`` as jobs: groups of stackable runs and single runs, in the suite's order.
    Runs that may stack together are split into as few groups of at most ``max_members`` as
    possible, as even in size as possible, and into more when that makes the number of groups
    a multiple of ``workers`` (3 groups on 2 workers leave one idle for a third of the time;
    4 smaller ones do not). ``stack`` "off" (or a run's ``train.stack: off``): all single;
    None follows each run's ``train.stack``."""
    stackable: dict[str, list[RunSpec]] = {}
    order: list[RunSpec | str] = []  # single runs, and each group key where it first appears
    for spec in specs:
        mode = stack or spec.train.stack
        if mode == "off" or max_members < 2 or refusal(spec, registry, compile):
            order.append(spec)
            continue
        key = group_key(spec) + mode
        if key not in stackable:
            order.append(key)
        stackable.setdefault(key, []).append(spec)
    counts = {key: math.ceil(len(runs) / max_members) for key, runs in stackable.items()}
    while workers > 1 and sum(counts.values()) % workers:
        splittable = [k for k in counts if len(stackable[k]) >= 2 * (counts[k] + 1)]
        if not splittable:
            break
        counts[max(splittable, key=lambda k: len(stackable[k]) / counts[k])] += 1
    jobs: list[tuple[RunSpec, ...]] = []
    for item in order:
        if isinstance(item, str):
            jobs += [tuple(chunk) for chunk in even_chunks(stackable[item], counts[item])]
        else:
            jobs.append((item,))
    return jobs


def even_chunks(runs: list[RunSpec], count: int) -> list[list[RunSpec]]:
    """``runs`` in ``count`` consecutive chunks whose sizes differ by at most one."""
    size, extra = divmod(len(runs), count)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [runs[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def trial_key(specs: Sequence[RunSpec], device: str, threads: int) -> str:
    """The configuration a trial's verdict holds for: machine, torch, threads, group, size."""
    import torch

    machine = (platform.machine(), torch.backends.cpu.get_cpu_capability(), device, threads)
    if device.startswith("cuda"):
        machine += (torch.cuda.get_device_name(torch.device(device)),)
    what = (machine, str(torch.__version__), group_key(specs[0]), len(specs))
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:16]


def verdicts_file() -> Path:
    from harness.evaluation.evaluator import cache_dir

    return cache_dir() / "stacking.json"


def known_verdicts() -> dict:
    """The remembered verdicts; none when there is no file yet or it is damaged (the trials
    then run again)."""
    try:
        known = json.loads(verdicts_file().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def remembered(key: str) -> dict | None:
    return known_verdicts().get(key)


def remember(key: str, verdict: dict) -> None:
    """Add a verdict to the cache (written whole, then renamed: concurrent writers lose at
    most a verdict, which is measured again)."""
    path, known = verdicts_file(), known_verdicts()
    known[key] = verdict
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache: the trial runs again next time
