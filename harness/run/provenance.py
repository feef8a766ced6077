"""What a run's numbers depend on besides its config: the torch build, the device, the CPU
thread count and instruction set, the Python version, and the evaluation protocol. Logged as
params of every run; the thread count is a setting (``--threads``, one by default), so the
same command gives the same numbers on the same torch build whatever ``--jobs`` is."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator

import torch

from harness.evaluation.evaluator import evaluation_protocol
from harness.run.store import PROVENANCE

DEFAULT_THREADS = 1  # torch intra-op threads per run, whatever --jobs is


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def provenance(device: torch.device) -> dict[str, str]:
    """The environment's params: ``torch_version``, ``device``, ``torch_threads``,
    ``cpu_capability`` (the instruction set torch's CPU kernels use), ``python_version``."""
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    values = (
        str(torch.__version__),
        name,
        str(torch.get_num_threads()),
        torch.backends.cpu.get_cpu_capability(),
        platform.python_version(),
    )
    return dict(zip(PROVENANCE, values, strict=True))


def run_provenance(spec, registry, device: torch.device) -> dict[str, str]:
    """A run's provenance params and its ``eval_protocol`` (see
    :func:`harness.evaluation.evaluator.evaluation_protocol`)."""
    dataset = registry.create("dataset", spec.dataset.name, spec.dataset.params)
    return provenance(device) | {"eval_protocol": evaluation_protocol(dataset, spec.eval.samples)}
