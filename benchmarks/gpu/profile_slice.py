"""A slice of a suite's ``full`` profile: the same strategies, architecture and batch, with
fewer steps and seeds, MNIST read from the embedded digits (the GPU machine has no network and
no torchvision download; the per-step cost does not depend on where the digits came from)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from harness.run.loading import load_suite

TINY_WIDTH = {"mlp": 8, "dcgan28": 4}  # the CPU dry run's widths


def load_slice(
    path: str | Path,
    *,
    steps: int,
    seeds: list[int],
    eval_every: int,
    eval_samples: int,
    precision: str = "fp32",
    tiny: bool = False,
):
    """``load_suite(path, profile="full")`` with these overrides; returns (suite, registry)."""
    raw = yaml.safe_load(Path(path).read_text())
    full = raw["profiles"]["full"]
    if "source" in full.get("dataset", {}):
        full["dataset"]["source"] = "embedded"
    full["train"] = {**full.get("train", {}), "steps": steps, "log_every": max(1, steps // 2)}
    full["train"]["precision"] = precision
    full["eval"] = {**full.get("eval", {}), "every": eval_every, "samples": eval_samples}
    full["seeds"] = seeds
    if tiny:
        name = raw["architecture"]["name"]
        full["architecture"] = {**full.get("architecture", {}), "width": TINY_WIDTH[name]}
        full["train"]["batch_size"] = 16
    with tempfile.TemporaryDirectory() as tmp:
        derived = Path(tmp) / Path(path).name
        derived.write_text(yaml.safe_dump(raw, sort_keys=False))
        return load_suite(derived, profile="full")
