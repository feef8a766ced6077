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
from torch import Tensor, nn

import harness
from harness.errors import HarnessError

DEFAULT_METRICS = ("mode_coverage", "fid", "transport")  # each skips data it does not apply to
MIN_SAMPLES = {"fid": 10, "fid_inception": 10, "transport": 2}  # others: 1
NAME_PATTERN = r"[A-Za-z0-9_.\-]{1,100}"
RANGES = "uint8 0–255, or floats in [0, 1] or [−1, 1]"
FILE_KINDS = ".npy, .npz, .pt (a tensor) or a folder of PNGs"


class _NoCritic(nn.Module):
    """Stands in for the critic a scored sample set does not have: NaN scores, and a note
    that a metric asked (its critic-based values are left out)."""

    def __init__(self):
        super().__init__()
        self.asked = False

    def forward(self, x: Tensor) -> Tensor:
        self.asked = True
        return torch.full((len(x),), float("nan"), device=x.device)


def read_samples(path: str | Path) -> np.ndarray | Tensor:
    """The array stored at ``path``: .npy, .npz (its only array, or ``x``/``samples``), .pt/.pth
    (a tensor, or a dict with ``x``/``samples``) or a folder of PNG images (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        return _read_pngs(path)
    if not path.exists():
        raise HarnessError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return _one_array(path, dict(archive))
        if suffix in (".pt", ".pth"):
            data = torch.load(path, map_location="cpu", weights_only=True)
            return data if isinstance(data, Tensor) else _one_array(path, data)
    except HarnessError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HarnessError(f"{path}: cannot read: {first[:200]}") from None
    raise HarnessError(f"{path}: expected {FILE_KINDS}")


def _one_array(path: Path, data: Any) -> np.ndarray | Tensor:
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: holds a {type(data).__name__}, not an array")
    arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray | Tensor)}
    for key in ("x", "samples"):
        if key in arrays:
            return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise HarnessError(f"{path}: holds arrays {', '.join(map(str, arrays)) or 'none'}: name one x")


def _read_pngs(folder: Path) -> np.ndarray:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise HarnessError(f"{folder}: no .png files in the folder")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                if image.mode not in ("L", "RGB"):
                    image = image.convert("RGB" if "A" in image.mode else "L")
                images.append(np.asarray(image))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise HarnessError(f"{file}: not a readable PNG: {first[:200]}") from None
        if images[-1].shape != images[0].shape:
            raise HarnessError(
                f"{file}: {_shape(images[-1].shape)} differs from {files[0].name}'s "
                f"{_shape(images[0].shape)}"
            )
    return np.stack(images)


def _shape(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def to_samples(x: Any, expected: tuple[int, ...], where: str = "samples") -> Tensor:
    """``x`` as float32 samples of shape (N, *expected) in the data's range, or a one-line
    error: wrong shape or dtype, NaN/inf, values out of range."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
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


def score(
    x: Any,
    dataset: str = "mnist",
    *,
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
    .npy/.npz/.pt file or a folder of PNGs) of ``dataset``; ``log=True`` also records them as
    an MLflow run (strategy ``score:NAME``) in ``experiment``, beside trained strategies."""
    from harness.evaluation import EvalContext
    from harness.evaluator import evaluation_protocol
    from harness.parts import Samples
    from harness.provenance import DEFAULT_THREADS, provenance, torch_threads
    from harness.registry import Registry
    from harness.suite import PartRef
    from harness.trainer import resolve_device

    where = str(x) if isinstance(x, str | Path) else "samples"
    label = run_name(name, where)
    raw = read_samples(x) if isinstance(x, str | Path) else x
    registry = Registry()
    ref = PartRef(name=dataset, params=dataset_params or {})
    data = registry.create("dataset", ref.name, ref.params, field="--dataset")
    names = list(metrics or DEFAULT_METRICS)
    parts = {m: registry.create("metric", m, {}, field="--metrics") for m in names}
    test = data.load("test", data_dir)
    fake = to_samples(raw, tuple(test.x.shape[1:]), where)
    n = len(fake)
    for metric in names:
        if n < MIN_SAMPLES.get(metric, 1):
            raise HarnessError(
                f"{where}: {n} samples; metric {metric} needs at least {MIN_SAMPLES[metric]}"
            )
    dev = resolve_device(device)
    with torch_threads(DEFAULT_THREADS):
        ctx = EvalContext(
            spec=_spec(ref, names, n),
            dataset=data,
            generator=None,
            critic=_NoCritic(),
            loss=None,
            real=Samples(test.x[:n].to(dev), test.y[:n].to(dev)),
            device=dev,
            data_dir=data_dir,
            train=data.load("train", data_dir).x.to(dev),
            fake=fake.to(dev),
        )
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
    if log:
        params = {
            "eval_protocol": evaluation_protocol(data, n),
            **provenance(dev),
            "score.samples": where,
            "score.sha256": _digest(fake),
        }
        log_score(values, ref, names, registry, n, params, label, experiment, tracking_uri)
    return values


def protocol_note(tracking_uri: str | None, experiment: str, label: str) -> str | None:
    """A note when the scores just logged as ``label`` were measured under another evaluation
    protocol than the experiment's trained runs (tables keep one protocol at a time)."""
    from harness.tracking import Tracker

    client = Tracker(tracking_uri).client
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        [found.experiment_id],
        "tags.`harness.kind` != 'suite'",
        order_by=["attributes.start_time ASC"],
    )
    theirs = {
        r.data.params.get("eval_protocol")
        for r in runs
        if r.data.tags.get("harness.kind") == "run" and "eval_protocol" in r.data.params
    }
    mine = [
        r.data.params.get("eval_protocol") for r in runs if r.data.tags.get("strategy") == label
    ]
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


def _spec(dataset, metrics: list[str], n: int):
    """A RunSpec standing for "these samples": metrics may read its dataset and eval size."""
    from harness.suite import (
        ArchitectureConfig,
        EvalConfig,
        OptimizerConfig,
        PartRef,
        RunSpec,
        TrainConfig,
    )

    return RunSpec(
        suite="score",
        strategy="score",
        seed=0,
        dataset=dataset,
        architecture=ArchitectureConfig(name="none"),
        train=TrainConfig(steps=1),
        loss=PartRef(name="none"),
        constraint=PartRef(name="none"),
        optimizer=OptimizerConfig(name="adam", lr=1e-4),
        eval=EvalConfig(every=1, samples=n),
        metrics=[PartRef(name=m) for m in metrics],
        plugins=[],
    )


def _digest(x: Tensor) -> str:
    return hashlib.sha256(x.cpu().contiguous().numpy().tobytes()).hexdigest()


def log_score(
    values: dict[str, float],
    dataset,
    metrics: list[str],
    registry,
    n: int,
    extra: dict[str, str],
    name: str,
    experiment: str,
    tracking_uri: str | None,
) -> str:
    """Record scores as a finished MLflow run that tables show as strategy ``score:NAME``;
    returns its run id."""
    import time

    from mlflow.entities import Metric, Param

    from harness.tracking import Tracker, flatten

    tracker = Tracker(tracking_uri)
    params = flatten({"dataset": dataset.model_dump(mode="json"), "eval": {"samples": n}})
    params |= {
        "harness_version": harness.__version__,
        "metrics": json.dumps(metrics),
        f"identity.dataset.{dataset.name}": str(registry.get("dataset", dataset.name).identity),
        **{f"identity.metric.{m}": str(registry.get("metric", m).identity) for m in metrics},
        **extra,
    }
    run = tracker.client.create_run(
        tracker.experiment_id(experiment),
        run_name=name,
        tags={
            "harness.kind": "score",
            "strategy": name,
            "seed": "0",
            "status": "finished",
            "run_key": f"score-{extra['score.sha256'][:16]}",
        },
    )
    run_id = run.info.run_id
    tracker.client.log_batch(
        run_id,
        metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in values.items()],
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
    )
    tracker.client.set_terminated(run_id, "FINISHED")
    return run_id
