"""FID, KID and precision/recall through torch-fidelity, offline.

The feature extractor is the harness's MNIST evaluator (penultimate layer), registered with
torch-fidelity under a name carrying the evaluator's data fingerprint; multi-channel inputs
(Stacked MNIST) are embedded channel by channel and concatenated. Inception-v3 FID runs only
from a local weights file: nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from harness.errors import HarnessError

FEATURE = "penultimate"
_EVALUATORS: dict[str, nn.Module] = {}


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
        kid_subset_size=min(1000, n),
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
