"""FID, KID and precision/recall through torch-fidelity, offline.

The feature extractor is the harness's frozen MNIST evaluator (penultimate layer), registered
with torch-fidelity under a name carrying its weights' hash and device; multi-channel inputs
(Stacked MNIST) are embedded channel by channel and concatenated. Cached real statistics and
real-vs-real floors are keyed by the extractor, the exact reference samples, the device and the
CPU thread count.
Inception-v3 FID runs only from a local weights file: nothing is ever downloaded.
"""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from harness.core.errors import HarnessError

FEATURE = "penultimate"
_EVALUATORS: dict[str, nn.Module] = {}
_FLOORS: dict[str, float] = {}  # real-vs-real FID by extractor, exact halves and device


class MissingWeightsError(HarnessError, FileNotFoundError):
    """Inception weights are not on disk."""


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] floats -> 0..255 bytes, the input type torch-fidelity expects."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class _Images(Dataset):
    def __init__(self, x: Tensor, channels: int | None = None):
        x = to_uint8(x).cpu()
        self.x = x.expand(-1, channels, -1, -1) if channels and x.shape[1] == 1 else x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i]


def _extractor_class():
    """torch-fidelity builds extractors from its registry by name; torch-fidelity is imported
    lazily, so the class is made on first registration."""
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class _EvaluatorFeatures(FeatureExtractorBase):
        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            self.net = _EVALUATORS[name]

        @staticmethod
        def get_provided_features_list():
            return (FEATURE,)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return FEATURE

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

        def forward(self, x: Tensor) -> tuple[Tensor]:
            device = next(self.net.parameters()).device
            x = x.to(device).float() / 127.5 - 1
            return (torch.cat([self.net.features(x[:, c : c + 1]) for c in range(x.shape[1])], 1),)

    return _EvaluatorFeatures


def register_evaluator_extractor(name: str, evaluator: nn.Module) -> str:
    """Make ``evaluator.features`` available to torch-fidelity as extractor ``name``."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    _EVALUATORS[name] = evaluator
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, _extractor_class())
    return name


def fidelity_metrics(
    generated: Tensor,
    real: Tensor,
    *,
    extractor: str,
    device: torch.device,
    metrics: tuple[str, ...] = ("fid", "kid", "prc"),
    real_cache_key: str | None = None,
    cache_dir: Path | None = None,
) -> dict[str, float]:
    """FID / KID / precision-recall between generated and real images in [-1, 1]."""
    import torch_fidelity

    n = min(len(generated), len(real))
    if real_cache_key and cache_dir:
        vet_cache(cache_dir, real_cache_key)
        kwargs = {"input2_cache_name": real_cache_key, "cache_root": str(cache_dir), "cache": True}
    else:
        kwargs = {"cache": False}
    values = torch_fidelity.calculate_metrics(
        input1=_Images(generated),
        input2=_Images(real),
        feature_extractor=extractor,
        fid="fid" in metrics,
        kid="kid" in metrics,
        prc="prc" in metrics,
        kid_subset_size=kid_subset_size(n),
        prc_neighborhood=min(3, n - 1),
        cuda=device.type == "cuda",
        batch_size=500,
        save_cpu_ram=True,
        verbose=False,
        **kwargs,
    )
    names = {
        "frechet_inception_distance": "fid",
        "kernel_inception_distance_mean": "kid",
        "kernel_inception_distance_std": "kid_std",
        "precision": "precision",
        "recall": "recall",
        "f_score": "f_score",
    }
    return {names[k]: float(v) for k, v in values.items() if k in names}


def vet_cache(cache_dir: Path, key: str) -> None:
    """Delete the cached files of ``key`` that are not plain data. torch-fidelity loads its
    cache with ``weights_only=False``, which runs whatever a planted pickle says; a file that
    loads with ``weights_only=True`` (tensors, numpy arrays, numbers, containers) holds no code,
    so only such files are left for it. One that fails is recomputed."""
    import numpy as np
    from numpy._core.multiarray import _reconstruct

    safe = [_reconstruct, np.ndarray, np.dtype, np.dtypes.Float32DType, np.dtypes.Float64DType]
    for path in Path(cache_dir).glob(f"{glob.escape(key)}*"):
        try:
            with torch.serialization.safe_globals(safe):
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            path.unlink(missing_ok=True)


def kid_subset_size(n: int) -> int:
    """KID's subset size for n samples a side: torch-fidelity's 1,000, or half the set when it
    has no more (subsets of the whole set would all be the same set: a spread of zero)."""
    return 1000 if n > 1000 else max(2, n // 2)


def data_digest(x: Tensor) -> str:
    """A hash of a tensor's exact contents and shape."""
    x = x.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{x.dtype}|{tuple(x.shape)}|".encode())
    digest.update(x.numpy().tobytes())
    return digest.hexdigest()[:16]


def _numerics(device: torch.device) -> str:
    """What float rounding of features depends on besides the data: device and, on CPU, the
    torch thread count (features agree to ~1e-6 across counts; cached values must be exact)."""
    return f"{device.type}{torch.get_num_threads()}t" if device.type == "cpu" else device.type


def real_floor(train: Tensor, n: int, *, extractor: str, device: torch.device) -> float:
    """FID between two disjoint halves of ``train`` of up to ``n`` samples each: the value two
    real sets of the evaluated size reach. Computed once per process for each exact input."""
    half = min(n, len(train) // 2)
    a, b = train[:half], train[half : 2 * half]
    key = f"{extractor}|{data_digest(a)}|{data_digest(b)}|{_numerics(device)}"
    if key not in _FLOORS:
        _FLOORS[key] = fidelity_metrics(a, b, extractor=extractor, device=device, metrics=("fid",))[
            "fid"
        ]
    return _FLOORS[key]


def evaluator_fidelity(
    generated: Tensor,
    train: Tensor,
    evaluator,
    *,
    device: torch.device,
    metrics: tuple[str, ...] = ("fid", "kid", "prc"),
    cache_dir: Path | None = None,
) -> dict[str, float]:
    """The ``fid`` metric's values for ``generated`` against the first n of ``train`` (n the
    smaller count) in ``evaluator``'s feature space: ``fid_mnist``, ``kid_mnist``(``_std``),
    ``precision_mnist``, ``recall_mnist``, ``f_score_mnist``, the real-vs-real floor
    ``fid_mnist_floor`` and ``fid_mnist_samples``. The reference statistics are cached under
    ``cache_dir`` (None: not cached) by extractor, exact reference samples and numerics."""
    import torch_fidelity

    name = register_evaluator_extractor(
        f"harness-mnist-{evaluator.fingerprint}-{device.type}", evaluator.net
    )
    n = min(len(generated), len(train))
    reference = train[:n]
    key = f"{name}-{data_digest(reference)}-{_numerics(device)}-tf{torch_fidelity.__version__}"
    values = fidelity_metrics(
        generated[:n],
        reference,
        extractor=name,
        device=device,
        metrics=metrics,
        real_cache_key=key,
        cache_dir=cache_dir,
    )
    out = {f"{k}_mnist": v for k, v in values.items() if k != "kid_std"}
    if "kid_std" in values:
        out["kid_mnist_std"] = values["kid_std"]
    floor = real_floor(train, n, extractor=name, device=device)
    return out | {"fid_mnist_floor": floor, "fid_mnist_samples": float(n)}


def inception_weights(path: str | None) -> Path:
    """The local Inception-v3 weights file, or one clear error (never a download)."""
    path = path or os.environ.get("HARNESS_INCEPTION_WEIGHTS")
    if not path or not Path(path).is_file():
        where = path or "nowhere: set HARNESS_INCEPTION_WEIGHTS or the metric's weights parameter"
        raise MissingWeightsError(
            f"Inception-v3 weights (torch-fidelity's pt_inception-2015-12-05) not found at {where};"
            " the harness never downloads them"
        )
    return Path(path)


def inception_fid(generated: Tensor, real: Tensor, *, weights: Path, device: torch.device) -> float:
    """Classic FID with Inception-v3 features from a local weights file."""
    import torch_fidelity

    values = torch_fidelity.calculate_metrics(
        input1=_Images(generated, channels=3),
        input2=_Images(real, channels=3),
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(weights),
        fid=True,
        cuda=device.type == "cuda",
        save_cpu_ram=True,
        verbose=False,
        cache=False,
    )
    return float(values["frechet_inception_distance"])
