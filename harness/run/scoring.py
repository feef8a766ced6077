"""Score samples the harness did not generate, with the same metric plugins and protocol as a
run: mode coverage, FID/KID/precision-recall with the real-vs-real floor, exact W1.

Samples come as an array (numpy, torch), an ``.npy``/``.npz``/``.pt`` file or a folder of
PNGs. Images may be uint8 0–255 (mapped by x/127.5 − 1), floats in [0, 1] (mapped by
2x − 1) or floats in [−1, 1] (kept), in (N, C, H, W), (N, H, W, C) or, single-channel,
(N, H, W); a float array with no negative value is read as [0, 1]. Points (the 2-D toys) are
any finite floats of shape (N, 2). Anything else is a one-line :class:`HarnessError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.core.spec import PartRef
from harness.core.version import __version__
from harness.evaluation.context import Context, open_context
from harness.evaluation.evaluator import evaluation_protocol
from harness.run.provenance import DEFAULT_THREADS, provenance, torch_threads
from harness.run.sample_files import MAX_SAMPLES, read_samples
from harness.run.store import IDENTITY, PROTOCOL, VERSION, Store, flatten
from harness.run.trainer import check_device

DEFAULT_METRICS = ("mode_coverage", "fid", "transport")  # each skips data it does not apply to
MIN_SAMPLES = {"fid": 10, "fid_inception": 10, "transport": 2}  # others: 1
NAME_PATTERN = r"[A-Za-z0-9_.\-]{1,100}"
RANGES = "uint8 0–255, or floats in [0, 1] or [−1, 1]"


def _shape(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def to_samples(x: Any, expected: tuple[int, ...], where: str = "samples") -> Tensor:
    """``x`` as float32 samples of shape (N, *expected) in the data's range, or a one-line
    error: wrong shape or dtype, NaN/inf, values out of range, too many samples."""
    if isinstance(x, Tensor):
        x = _tensor_values(x, where)
    try:
        x = np.asarray(x)
    except Exception as exc:  # ragged lists, objects numpy cannot hold as numbers
        raise HarnessError(f"{where}: not an array of numbers: {exc}") from None
    if x.ndim and len(x) > MAX_SAMPLES:
        raise HarnessError(f"{where}: {len(x):,} samples; at most {MAX_SAMPLES:,} are scored")
    if x.dtype.kind not in "uif":
        raise HarnessError(f"{where}: dtype {x.dtype} is not numeric; images must be {RANGES}")
    image = len(expected) == 3
    if image and x.ndim == 4 and x.shape[1:] == expected[1:] + expected[:1]:
        x = np.moveaxis(x, -1, 1)  # channels last
    elif image and expected[0] == 1 and x.shape[1:] == expected[1:]:
        x = x[:, None]
    if x.ndim != len(expected) + 1 or x.shape[1:] != expected:
        also = ""
        if image:
            c, h, w = expected
            also = f" or (N, {h}, {w}, {c})" + (f" or (N, {h}, {w})" if c == 1 else "")
        raise HarnessError(
            f"{where}: shape {_shape(x.shape)}, expected (N, {', '.join(map(str, expected))})"
            + also
        )
    if len(x) == 0:
        raise HarnessError(f"{where}: no samples")
    if x.dtype.kind == "f":
        bad = int((~np.isfinite(x)).sum())
        if bad:
            raise HarnessError(f"{where}: {bad} NaN or infinite values")
    if not image:
        return torch.as_tensor(x, dtype=torch.float32)
    low, high = float(x.min()), float(x.max())
    if x.dtype.kind in "ui":
        if low < 0 or high > 255:
            raise HarnessError(f"{where}: integer values span [{low:g}, {high:g}], expected 0–255")
        return torch.as_tensor(x, dtype=torch.float32) / 127.5 - 1
    if low >= 0 and high <= 1:
        return torch.as_tensor(x, dtype=torch.float32) * 2 - 1
    if low >= -1 and high <= 1:
        return torch.as_tensor(x, dtype=torch.float32)
    raise HarnessError(f"{where}: values span [{low:.4g}, {high:.4g}]; images must be {RANGES}")


def _tensor_values(x: Tensor, where: str) -> np.ndarray:
    """A tensor's values as a numpy array: dense, on a real device, of a real number type
    (bfloat16 and half are widened to float32)."""
    if x.layout != torch.strided:
        raise HarnessError(f"{where}: a {x.layout} tensor; give a dense one (x.to_dense())")
    if x.device.type == "meta":
        raise HarnessError(f"{where}: a meta tensor holds no values")
    if x.is_complex() or x.dtype == torch.bool:
        raise HarnessError(f"{where}: dtype {x.dtype} is not a real number type")
    if x.dtype in (torch.bfloat16, torch.float16):
        x = x.float()
    return x.detach().cpu().numpy()


def score(
    x: Any,
    dataset: str = "mnist",
    *,
    real: int | None = None,
    metrics: list[str] | tuple[str, ...] | None = None,
    dataset_params: dict[str, Any] | None = None,
    device: str = "cpu",
    data_dir: Path | None = None,
    log: bool = False,
    name: str | None = None,
    experiment: str = "score",
    tracking_uri: str | None = None,
) -> dict[str, float]:
    """The metrics a run logs, measured on samples ``x`` (an array, a tensor, or a path to an
    .npy/.npz/.pt file or a folder of PNGs) of ``dataset``, or, with ``real=N`` and ``x`` None,
    on the first N real samples of its test split: the scores a perfect generator would get
    (the evaluator's ceiling). ``log=True`` also records them as an MLflow run (strategy
    ``score:NAME``) in ``experiment``, beside trained strategies."""
    if (x is None) == (real is None):
        raise HarnessError("give the samples to score or --real N, one of them")
    where = (
        f"{real:,} real {dataset} samples"
        if real
        else (str(x) if isinstance(x, str | Path) else "samples")
    )
    label = run_name(name or (f"real-{real}" if real else None), where)
    registry = Registry()
    ref = PartRef(name=dataset, params=dataset_params or {})
    data = registry.create("dataset", ref.name, ref.params, field="--dataset")
    names = list(metrics or DEFAULT_METRICS)
    parts = {m: registry.create("metric", m, {}, field="--metrics") for m in names}
    test = data.load("test", data_dir)
    shape = tuple(test.x.shape[1:])
    if real is not None:
        x = real_samples(test.x, real, dataset)
    raw = read_samples(x, shape) if isinstance(x, str | Path) else x
    fake = to_samples(raw, shape, where)
    for metric in names:
        if len(fake) < MIN_SAMPLES.get(metric, 1):
            raise HarnessError(
                f"{where}: {len(fake)} samples; metric {metric} needs at least "
                f"{MIN_SAMPLES[metric]}"
            )
    dev = check_device(device)
    with torch_threads(DEFAULT_THREADS):
        ctx = open_context(data, dev, samples=len(fake), data_dir=data_dir, test=test)
        ctx.fake = fake.to(dev)
        values = measure(ctx, parts)
    if log:
        params = {
            PROTOCOL: evaluation_protocol(data, len(fake)),
            **provenance(dev),
            "score.samples": where,
            "score.sha256": _digest(fake),
        }
        log_score(values, ref, names, registry, len(fake), params, label, experiment, tracking_uri)
    return values


def scores_csv(values: dict[str, float], samples: str, dataset: str, params: list[str]) -> str:
    """The scores as a one-row CSV: what was scored, the dataset and its parameters, each
    metric a column."""
    import pandas as pd

    row = {"samples": samples, "dataset": dataset, "params": " ".join(params), **values}
    return pd.DataFrame([row]).to_csv(index=False)


def real_samples(test: Tensor, n: int, dataset: str) -> Tensor:
    """The first ``n`` samples of a test split, or one line saying how many it holds."""
    if not 1 <= n <= min(len(test), MAX_SAMPLES):
        raise HarnessError(
            f"--real {n}: give 1 to {min(len(test), MAX_SAMPLES):,}, the samples of {dataset}'s "
            "test split (a dataset parameter such as --param n=... may make more)"
        )
    return test[:n]


def measure(ctx: Context, parts: dict) -> dict[str, float]:
    """Each metric's ``evaluate`` on samples without a critic: values that need one (NaN from
    the absent critic) are left out, and a metric that cannot do without one is one line."""
    values: dict[str, float] = {}
    for metric, part in parts.items():
        ctx.critic.asked = False
        try:
            out = part.evaluate(ctx)
        except Exception as exc:
            reason = "needs a critic, which samples alone lack" if ctx.critic.asked else exc
            raise HarnessError(f"metric {metric}: {reason}") from None
        if ctx.critic.asked:  # estimates from the critic: not measurable here
            out = {k: v for k, v in out.items() if not np.isnan(v)}
        values.update({k: float(v) for k, v in out.items()})
    return values


def protocol_note(tracking_uri: str | None, experiment: str, label: str) -> str | None:
    """A note when the scores just logged as ``label`` were measured under another evaluation
    protocol than the experiment's trained runs (tables keep one protocol at a time)."""
    runs = Store(tracking_uri).runs(experiment)
    theirs = {r.params[PROTOCOL] for r in runs if r.kind == "run" and PROTOCOL in r.params}
    mine = [r.params.get(PROTOCOL) for r in runs if r.strategy == label]
    if not theirs or not mine or mine[-1] in theirs:
        return None
    return (
        f"note: {label} was measured under protocol {mine[-1]}, the trained runs under "
        f"{', '.join(sorted(theirs))}; tables show one protocol at a time (score as many "
        "samples as the suite's eval.samples to compare)"
    )


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["source=torchvision", "n=1000"]`` -> ``{"source": "torchvision", "n": 1000}`` (YAML
    scalars, as in a suite)."""
    import yaml

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"--param: expected KEY=VALUE, got {item!r}")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            params[key.strip()] = value
    return params


def run_name(name: str | None, where: str) -> str:
    """``score:NAME``, the scores' strategy name in tables (default: the file's stem)."""
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(where).stem)[:100] or "samples"
    elif not re.fullmatch(NAME_PATTERN, name):
        raise HarnessError(f"--name {name!r}: use letters, digits and -_. only (1 to 100)")
    return f"score:{name}"


def _digest(x: Tensor) -> str:
    return hashlib.sha256(x.cpu().contiguous().numpy().tobytes()).hexdigest()


def log_score(
    values: dict[str, float],
    dataset: PartRef,
    metrics: list[str],
    registry: Registry,
    n: int,
    extra: dict[str, str],
    name: str,
    experiment: str,
    tracking_uri: str | None,
) -> str:
    """Record scores as a finished run that tables show as strategy ``score:NAME``, with the
    params a trained run has for its dataset, metrics and evaluation; returns its run id."""
    params = flatten({"dataset": dataset.model_dump(mode="json"), "eval": {"samples": n}})
    params |= {
        VERSION: __version__,
        "metrics": json.dumps(metrics),
        f"{IDENTITY}dataset.{dataset.name}": str(registry.get("dataset", dataset.name).identity),
        **{f"{IDENTITY}metric.{m}": str(registry.get("metric", m).identity) for m in metrics},
        **extra,
    }
    key = f"score-{extra['score.sha256'][:16]}"
    return Store(tracking_uri).log_score(experiment, name, key, params, values)
