"""``harness new-plugin``: write a ready plugin package for one part — its module with a small
working example, the entry point, a conformance test and a one-strategy suite."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from string import Template

from harness.core.errors import HarnessError

NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*\Z")  # no "__": dist names collapse it

PYPROJECT = """\
[project]
name = "$dist"
version = "0.1.0"
description = "A $kind for harness: $name."
requires-python = ">=3.11"
# harness is not a dependency: install this into the environment harness runs in (the
# command `harness new-plugin` printed), where its tests and suite find harness too.

[project.entry-points.harness]
$name = "$module"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""

MODULES = {
    "constraint": '''\
"""$cls: a Lipschitz strategy for harness, registered as constraint ``$name``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import harness
from harness.parts import Constraint

if TYPE_CHECKING:  # torch is imported where it is used: `harness list` stays fast
    from torch import Tensor, nn


class $cls(Constraint):
    """weight/2 · E‖∇f(x)‖² at real samples x (the R1 penalty, Mescheder et al., 2018)."""

    def __init__(self, weight: float = 10.0):
        if not weight >= 0:  # not `weight < 0`: NaN fails every comparison
            raise ValueError("weight must not be negative")
        self.weight = weight

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        import torch

        x = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return self.weight / 2 * grad.flatten(1).pow(2).sum(1).mean()

    # The other hooks, each optional: wrap_critic(critic) -> critic (structural) and
    # after_critic_step(critic) (a projection, under torch.no_grad()).


@harness.hookimpl
def register_constraints(register):
    register("$name", $cls)
''',
    "loss": '''\
"""$cls: a GAN loss for harness, registered as loss ``$name``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import harness
from harness.parts import Loss

if TYPE_CHECKING:  # no torch import at module level: `harness list` stays fast
    from torch import Tensor


class $cls(Loss):
    """Least squares (LSGAN, Mao et al., 2017): the critic pulls real outputs to +target and
    fake ones to −target, the generator pulls fake outputs to +target."""

    output = "score"  # a linear critic output ("logit" for a sigmoid-based loss)

    def __init__(self, target: float = 1.0):
        if not target > 0:  # not `target <= 0`: NaN fails every comparison
            raise ValueError("target must be positive")
        self.target = target

    def critic_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        real = (real_out - self.target).pow(2).mean()
        return (real + (fake_out + self.target).pow(2).mean()) / 2

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        return (fake_out - self.target).pow(2).mean() / 2


@harness.hookimpl
def register_losses(register):
    register("$name", $cls)
''',
    "architecture": '''\
"""$cls: generator and critic networks for harness, registered as architecture ``$name``."""

import math

from torch import nn

import harness
from harness.parts import Architecture, Output


def mlp(n_in: int, n_out: int, width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.LeakyReLU(0.2)]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


class $cls(Architecture):
    """LeakyReLU MLPs for data of any shape: ``depth`` hidden layers of ``width`` units."""

    def __init__(self, width: int = 128, depth: int = 2):
        self.width, self.depth = width, depth

    def build(self, z_dim: int, data_shape: tuple[int, ...], output: Output):
        dim = math.prod(data_shape)
        generator = nn.Sequential(
            mlp(z_dim, dim, self.width, self.depth), nn.Unflatten(1, data_shape)
        )
        # A linear last layer serves both outputs, a "logit" and a "score"; the critic
        # returns one value per sample, shape (N,), and has no batch norm.
        critic = nn.Sequential(
            nn.Flatten(), mlp(dim, 1, self.width, self.depth), nn.Flatten(0)
        )
        return generator, critic


@harness.hookimpl
def register_architectures(register):
    register("$name", $cls)
''',
    "dataset": '''\
"""$cls: a data set for harness, registered as dataset ``$name``."""

import math
from pathlib import Path
from typing import Literal

import torch

import harness
from harness.parts import Dataset, GaussianModes, Samples


class $cls(Dataset):
    """``k`` Gaussians of σ ``sigma`` evenly spaced on the unit circle: a mode-coverage toy."""

    def __init__(self, k: int = 6, sigma: float = 0.05, n: int = 20_000):
        angles = torch.arange(k) * 2 * math.pi / k
        self.modes = GaussianModes(torch.stack([angles.cos(), angles.sin()], 1), sigma)
        self.n = n

    def load(self, split: Literal["train", "test"], data_dir: Path | None = None) -> Samples:
        gen = torch.Generator().manual_seed({"train": 0, "test": 1}[split])  # fixed data
        y = torch.randint(0, self.modes.count, (self.n,), generator=gen)
        x = self.modes.centers[y] + self.modes.sigma * torch.randn(self.n, 2, generator=gen)
        return Samples(x, y)


@harness.hookimpl
def register_datasets(register):
    register("$name", $cls)
''',
}

TEST = '''\
"""$cls honours harness's plugin contract and is registered through its entry point."""

import pytest
from harness.registry import Registry
from harness.testing import DEVICES, check_$kind

from $module import $cls


@pytest.mark.parametrize("device", DEVICES)  # CUDA is skipped where there is none
def test_contract(device):
    check_$kind($cls, device=device)


def test_registered():
    assert Registry().get("$kind", "$name").cls is $cls
'''

DATASET_TEST = '''\
"""$cls honours harness's plugin contract and is registered through its entry point."""

from harness.registry import Registry
from harness.testing import check_dataset

from $module import $cls


def test_contract():
    check_dataset($cls, n=500)


def test_registered():
    assert Registry().get("dataset", "$name").cls is $cls
'''

SUITE = """\
# One strategy with $kind $name: add baselines beside it to compare with.
name: $name
dataset: $dataset
architecture: $architecture
train: {steps: 2000, batch_size: 256, n_critic: 5, log_every: 50}
strategies:
  $strategy
seeds: [0, 1, 2]
eval: {every: 500, samples: 2500}
metrics: [mode_coverage]
profiles:
  smoke:   # seconds: harness run suite.yaml -p smoke
    architecture: {width: 32}
    train: {steps: 4, batch_size: 32, log_every: 2}
    seeds: [0]
    eval: {every: 2, samples: 200}
"""

MLP = "{name: mlp, width: 128, depth: 3, z_dim: 2}"
SUITE_PARTS = {  # (dataset, architecture, the one strategy)
    "constraint": ("ring8", MLP, "wgan-$name: {loss: wasserstein, constraint: $name}"),
    "loss": ("ring8", MLP, "$name: {loss: $name, constraint: spectral_norm}"),
    "architecture": (
        "ring8",
        "{name: $name, z_dim: 2}",
        "wgan-gp: {loss: wasserstein, constraint: gradient_penalty}",
    ),
    "dataset": ("$name", MLP, "wgan-gp: {loss: wasserstein, constraint: gradient_penalty}"),
}
KINDS = tuple(MODULES)


def create(kind: str, name: str, directory: Path | None = None) -> list[Path]:
    """Write the package for part ``name`` of ``kind`` into ``directory`` (default
    ``./harness-<name>``, which must not exist); returns the files written."""
    if kind not in MODULES:
        raise HarnessError(f"KIND: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not NAME.match(name):
        raise HarnessError(
            f"NAME: {name!r} is not a lowercase Python identifier "
            "(letters, digits and underscores, starting with a letter), e.g. half_clip"
        )
    from harness.core.registry import Registry

    known = Registry().parts[kind].get(name)
    if known is not None:
        raise HarnessError(f"NAME: {kind} {name!r} already exists (from {known.source})")
    dist = "harness-" + name.replace("_", "-")
    directory = Path(directory or dist)
    if directory.exists():
        raise HarnessError(f"{directory} already exists: not overwriting it")
    values = {
        "kind": kind,
        "name": name,
        "cls": "".join(word.capitalize() for word in name.split("_")),
        "dist": dist,
        "module": "harness_" + name,
    }
    parts = (Template(text).substitute(values) for text in SUITE_PARTS[kind])
    values |= dict(zip(("dataset", "architecture", "strategy"), parts, strict=True))
    files = {
        "pyproject.toml": PYPROJECT,
        f"{values['module']}/__init__.py": MODULES[kind],
        f"tests/test_{name}.py": DATASET_TEST if kind == "dataset" else TEST,
        "suite.yaml": SUITE,
    }
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values))
        written.append(path)
    return written


def next_steps(directory: Path) -> list[str]:
    """The commands that install, test and run a written package from the directory they are
    printed in. They name the harness environment by its interpreter, so they need neither an
    activated environment nor the harness checkout as working directory."""
    python = Path(sys.executable)
    if python.with_name("python").is_file():  # python3.11 → python: the name every venv has
        python = python.with_name("python")
    script = python.with_name("harness")
    harness = _shown(script) if script.is_file() else f"{_shown(python)} -m harness.cli"
    if shutil.which("uv") or importlib.util.find_spec("pip") is None:
        install = f"uv pip install --python {_shown(python)} -e {_shown(directory)}"
    else:
        install = f"{_shown(python)} -m pip install -e {_shown(directory)}"
    return [
        install,
        f"{_shown(python)} -m pytest {_shown(directory / 'tests')}",
        f"{harness} run {_shown(directory / 'suite.yaml')} -p smoke",
    ]


def _shown(path: Path) -> str:
    """A path as a shell word: relative when under the working directory, else absolute."""
    path = Path(os.path.abspath(path))
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return shlex.quote(str(path))
