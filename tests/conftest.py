import os
import textwrap
from pathlib import Path

import pytest
import torch

# one torch thread per xdist worker (a worker per core), both cores for a lone process
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session", autouse=True)
def one_job_per_invocation():
    """`harness run` trains in this process unless a test asks for --jobs: the default (one
    process per core) would make every CLI test spawn workers (tests/test_jobs.py covers it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_JOBS", "1")
        yield


@pytest.fixture(scope="session", autouse=True)
def harness_cache(tmp_path_factory):
    """One cache of real-data statistics per test session, never the user's."""
    path = tmp_path_factory.mktemp("harness-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE_DIR", str(path))
        yield path


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite YAML (dedented text) into the test's directory; returns its path."""

    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def mnist_dir(tmp_path) -> Path:
    """A --data-dir holding the (empty) MNIST files the torchvision source checks for: enough
    to validate a full profile, not to train on."""
    raw = tmp_path / "mnist-data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (raw / f"{split}-{kind}-ubyte").touch()
    return tmp_path / "mnist-data"


TOY_SUITE = """
name: tiny
dataset: {name: ring8, n: 2000}
architecture: {name: mlp, width: 16, depth: 2, z_dim: 2}
train: {steps: 6, batch_size: 32, n_critic: 2, log_every: 3}
strategies:
  wgan-gp: {loss: wasserstein, constraint: gradient_penalty}
  bce: {loss: bce, constraint: none}
seeds: [0, 1]
eval: {every: 3, samples: 200}
metrics: [mode_coverage]
"""


@pytest.fixture(scope="session")
def tracking_store(tmp_path_factory) -> str:
    """One initialised MLflow SQLite store for the plugin-package tests to share (creating a
    store takes seconds); each of them logs to its own experiment."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    return uri
