"""``harness data fetch``: the one place the harness downloads anything, and only when asked.

Full MNIST goes through torchvision's own downloader (its mirror list, md5 checksums and
progress bar) into ``DIR/MNIST/raw``, exactly where ``source: torchvision`` reads it with
``--data-dir DIR``. Every socket operation times out, and the whole fetch gives up after
``DEADLINE_S``: offline it fails in one line, it never hangs.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from harness.core.errors import HarnessError

MIRROR_ENV = "HARNESS_MNIST_MIRROR"  # comma-separated base URLs tried instead of torchvision's
SOCKET_TIMEOUT_S = 8.0
DEADLINE_S = 25.0
DATASETS = ("mnist",)


def mirrors() -> list[str]:
    """The base URLs to try: ``$HARNESS_MNIST_MIRROR`` or torchvision's list."""
    from torchvision.datasets import MNIST

    urls = [u.strip() for u in os.environ.get(MIRROR_ENV, "").split(",") if u.strip()]
    return [u if u.endswith("/") else u + "/" for u in urls] or list(MNIST.mirrors)


def fetch(name: str, data_dir: Path) -> str:
    """Download dataset ``name`` into ``data_dir``; returns a line saying what is there."""
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(DATASETS)}"
        raise HarnessError(f"data fetch: unknown dataset {name!r}{hint}")
    return fetch_mnist(data_dir)


def fetch_mnist(data_dir: Path) -> str:
    """MNIST's four IDX files, md5-checked, into ``data_dir/MNIST/raw`` (the gzip archives are
    removed once unpacked); then read back through torchvision as a run reads them."""
    from torchvision.datasets import MNIST

    data_dir = Path(data_dir).expanduser()
    raw = Path(data_dir) / "MNIST" / "raw"
    urls = mirrors()
    if not _complete(data_dir):
        _download(MNIST.resources, urls, raw)
    try:
        train, test = (len(MNIST(str(data_dir), train=t, download=False)) for t in (True, False))
    except (RuntimeError, ValueError, OSError) as exc:
        raise HarnessError(f"MNIST under {raw} cannot be read: {exc}") from None
    return f"MNIST in {raw}: {train} training and {test} test digits; use --data-dir {data_dir}"


def _complete(data_dir: Path) -> bool:
    from torchvision.datasets import MNIST

    raw = Path(data_dir) / "MNIST" / "raw"
    return all((raw / name.removesuffix(".gz")).is_file() for name, _ in MNIST.resources)


def _download(resources: list[tuple[str, str]], urls: list[str], raw: Path) -> None:
    """Each archive from the first mirror that serves it with the right md5, unpacked. Runs
    in a daemon thread so that a stuck name lookup cannot outlast ``DEADLINE_S``."""
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            for filename, md5 in resources:
                _download_one(filename, md5, urls, raw)
            outcome.append(None)
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(SOCKET_TIMEOUT_S)  # torchvision's urlopen calls take no timeout
    try:
        thread = threading.Thread(target=work, daemon=True, name="harness-data-fetch")
        thread.start()
        thread.join(DEADLINE_S)
    finally:
        socket.setdefaulttimeout(previous)
    if not outcome:
        raise HarnessError(
            f"MNIST download: no answer from {', '.join(urls)} within {DEADLINE_S:.0f} s "
            f"(offline? set {MIRROR_ENV} to a reachable mirror)"
        )
    if outcome[0] is not None:
        raise outcome[0]


def _download_one(filename: str, md5: str, urls: list[str], raw: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    errors = []
    for url in urls:
        try:
            download_and_extract_archive(
                url + filename, download_root=str(raw), filename=filename, md5=md5
            )
        except (RuntimeError, OSError, ValueError) as exc:  # URLError is an OSError
            (raw / filename).unlink(missing_ok=True)  # a partial or corrupt archive
            errors.append(f"{url}: {_reason(exc)}")
            continue
        (raw / filename).unlink()  # unpacked and checked: the IDX file is what runs read
        return
    raise HarnessError(f"MNIST download of {filename} failed: {'; '.join(errors)}")


def _reason(exc: BaseException) -> str:
    """One line for a failed download (torchvision says "corrupted" for an md5 mismatch)."""
    if isinstance(exc, RuntimeError) and "corrupted" in str(exc):
        return "md5 checksum mismatch"
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else ""
    return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
