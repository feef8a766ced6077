"""A dry build before ``harness run`` writes anything: every distinct combination of dataset
shape, architecture, constraint and loss in a suite is built on the CPU and put through one
generator and critic forward pass of a tiny batch. A part that cannot take another (GroupSort
of 3 on 16 units, a plugin architecture for other shapes) then fails as one line, exit 2,
instead of failing every run at step 0. ``validate`` stays torch-free and skips this."""

from __future__ import annotations

import json

from harness.core.errors import SuiteError
from harness.core.registry import Registry
from harness.core.spec import Suite


def dry_build(suite: Suite, registry: Registry) -> None:
    """Build each distinct (dataset, architecture, constraint, loss) of ``suite`` once; a
    failure is a SuiteError naming the strategy. Datasets without a declared ``shape`` are
    skipped (their shape is known only after loading)."""
    import torch

    seen = set()
    for spec in suite.runs:
        parts = (spec.dataset, spec.architecture, spec.constraint, spec.loss)
        key = json.dumps([p.model_dump(mode="json") for p in parts], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        field = f"strategies.{spec.strategy}"
        shape = registry.create("dataset", spec.dataset.name, spec.dataset.params).shape
        if shape is None:
            continue
        arch = registry.create("architecture", spec.architecture.name, spec.architecture.params)
        loss = registry.create("loss", spec.loss.name, spec.loss.params)
        constraint = registry.create("constraint", spec.constraint.name, spec.constraint.params)
        batch = 2 * getattr(arch, "batch_multiple", 1)
        z_dim = spec.architecture.z_dim
        stage = "building the networks"
        try:
            with torch.random.fork_rng(devices=[]), torch.device("cpu"):
                generator, critic = arch.build(z_dim, tuple(shape), loss.output)
                stage = f"constraint {spec.constraint.name!r} wrapping the critic"
                critic = constraint.wrap_critic(critic)
                stage = "the generator's forward pass under torch.no_grad()"
                with torch.no_grad():
                    fake = generator(torch.randn(batch, z_dim))
                    stage = "the critic's forward pass under torch.no_grad()"
                    critic(fake)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # plugin code: any failure is this suite's error
            first = (str(exc).strip().splitlines() or [""])[0]
            message = (
                f"architecture {spec.architecture.name!r} with constraint "
                f"{spec.constraint.name!r} on dataset {spec.dataset.name!r} (samples of shape "
                f"{tuple(shape)}): {stage} raised {type(exc).__name__}: {first}"
            )
            raise SuiteError(message, file=suite.path, field=field) from None
