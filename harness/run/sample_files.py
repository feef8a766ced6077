"""Reading samples made elsewhere (``harness score``) without trusting the file: only regular
files and folders, array shapes and sizes read from headers before any data is decoded or
decompressed, images checked against the expected size before one is decoded, and nothing
loaded that could run code (no pickles: ``allow_pickle=False``, ``weights_only=True``).

Accepted: ``.npy``; ``.npz`` (its only array, or the one named ``x`` or ``samples``); ``.pt``
or ``.pth`` (a tensor, or a dict with ``x``/``samples``); a folder of PNG images, sorted by
name. Anything else, or anything larger than :data:`MAX_SAMPLES` samples or
:data:`MAX_BYTES` bytes, is one :class:`HarnessError`.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness.core.errors import HarnessError

MAX_SAMPLES = 200_000  # PacGAN's Stacked MNIST evaluates 26,000
MAX_BYTES = 4 * 2**30  # of array data, as stored
FILE_KINDS = ".npy, .npz, .pt (a tensor) or a folder of PNGs"
NAMES = ("x", "samples")  # the array a file with several holds


def read_samples(path: str | Path, sample_shape: tuple[int, ...]) -> np.ndarray | Tensor:
    """The samples stored at ``path``, each expected to be of ``sample_shape`` (C, H, W) or
    (D,) (an image may also come channels-last or, single-channel, as (H, W))."""
    path = Path(path)
    kind = _kind(path)
    if kind == "dir":
        return _read_pngs(path, sample_shape)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            with open(path, "rb") as file:
                _check(path, *_npy_header(file))
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            name = _npz_member(path)
            with np.load(path, allow_pickle=False) as archive:
                return archive[name]
        if suffix in (".pt", ".pth"):
            _check_zip_size(path)
            with warnings.catch_warnings():  # torch's notes on what it checks: not the user's
                warnings.simplefilter("ignore")
                data = torch.load(path, map_location="cpu", weights_only=True)
            return data if isinstance(data, Tensor) else _one_array(path, data)
    except HarnessError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HarnessError(f"{path}: cannot read: {first[:200]}") from None
    raise HarnessError(f"{path}: expected {FILE_KINDS}")


def _kind(path: Path) -> str:
    """ "dir" or "file"; anything else (missing, a FIFO, a device, a socket) is refused before
    it is opened: reading a FIFO would wait forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        return "dir"
    if not stat.S_ISREG(mode):
        raise HarnessError(f"{path}: not a regular file; expected {FILE_KINDS}")
    return "file"


def _npy_header(file) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(file)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(file)
    return tuple(shape), dtype


def _check(where, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse from a header alone: object arrays, more than MAX_SAMPLES samples, more than
    MAX_BYTES bytes (the shape of each sample is checked once the array is read)."""
    if dtype.hasobject:
        raise HarnessError(f"{where}: holds Python objects, not numbers")
    if not shape:
        raise HarnessError(f"{where}: a single number, not samples")
    if shape[0] > MAX_SAMPLES:
        raise HarnessError(f"{where}: {shape[0]:,} samples; at most {MAX_SAMPLES:,} are scored")
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_BYTES:
        raise HarnessError(f"{where}: {size:,} bytes of samples; at most {MAX_BYTES:,}")


def _npz_member(path: Path) -> str:
    """The member of an .npz to read, its header checked without decompressing its data."""
    with zipfile.ZipFile(path) as archive:
        members = [i for i in archive.infolist() if i.filename.endswith(".npy")]
        names = [m.filename.removesuffix(".npy") for m in members]
        chosen = next((n for n in NAMES if n in names), names[0] if len(names) == 1 else None)
        if chosen is None:
            shown = ", ".join(names) or "none"
            raise HarnessError(f"{path}: holds arrays {shown}: name one x")
        info = members[names.index(chosen)]
        if info.file_size > MAX_BYTES:
            size = f"{info.file_size:,} bytes uncompressed"
            raise HarnessError(f"{path}: {size}; at most {MAX_BYTES:,}")
        with archive.open(info) as member:
            _check(f"{path}[{chosen}]", *_npy_header(member))
    return chosen


def _check_zip_size(path: Path) -> None:
    """A torch file's data, uncompressed, within MAX_BYTES (a zip may claim far more than its
    own size)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            size = sum(i.file_size for i in archive.infolist())
    else:
        size = path.stat().st_size
    if size > MAX_BYTES:
        raise HarnessError(f"{path}: {size:,} bytes of data; at most {MAX_BYTES:,}")


def _one_array(path: Path, data: Any) -> np.ndarray | Tensor:
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: holds a {type(data).__name__}, not an array")
    arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray | Tensor)}
    for key in NAMES:
        if key in arrays:
            return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise HarnessError(f"{path}: holds arrays {', '.join(map(str, arrays)) or 'none'}: name one x")


def _read_pngs(folder: Path, sample_shape: tuple[int, ...]) -> np.ndarray:
    """Every PNG of ``folder`` (sorted by name): each a regular file whose header gives the
    expected width and height, all checked before the first is decoded."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise HarnessError(f"{folder}: no .png files in the folder")
    if len(files) > MAX_SAMPLES:
        raise HarnessError(f"{folder}: {len(files):,} images; at most {MAX_SAMPLES:,} are scored")
    size = (sample_shape[-1], sample_shape[-2]) if len(sample_shape) == 3 else None
    for file in files:
        _kind(file)
        try:
            with Image.open(file) as image:  # reads the header, decodes nothing
                found = image.size
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise HarnessError(f"{file}: not a readable PNG: {first[:200]}") from None
        if size is None:
            raise HarnessError(f"{folder}: images, but the dataset's samples are not images")
        if found != size:
            shown = f"{found[0]}×{found[1]} pixels, expected {size[0]}×{size[1]}"
            raise HarnessError(f"{file}: {shown}")
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
