"""`harness data fetch mnist`: torchvision's downloader against a loopback HTTP server serving
small generated IDX files, md5 checks, and one-line failures (never a hang) offline."""

import functools
import gzip
import hashlib
import http.server
import socket
import struct
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.data_fetch import MIRROR_ENV

SIZES = {"train": 6, "t10k": 4}


def idx_files(rng) -> dict[str, bytes]:
    """MNIST's four files in IDX format: 28×28 uint8 images and uint8 labels per split."""
    files = {}
    for split, n in SIZES.items():
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        header = struct.pack(">iiii", 2051, n, 28, 28)
        files[f"{split}-images-idx3-ubyte"] = header + images.tobytes()
        files[f"{split}-labels-idx1-ubyte"] = struct.pack(">ii", 2049, n) + labels.tobytes()
    return files


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A loopback server of the gzipped files; torchvision's resources name their md5s."""
    from torchvision.datasets import MNIST

    served = tmp_path / "mirror"
    served.mkdir()
    files = idx_files(np.random.default_rng(0))
    resources = []
    for name, content in files.items():
        archive = gzip.compress(content)
        (served / f"{name}.gz").write_bytes(archive)
        resources.append((f"{name}.gz", hashlib.md5(archive).hexdigest()))
    monkeypatch.setattr(MNIST, "resources", resources)
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{server.server_port}/")
    yield served, files
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def fetch(data_dir):
    return CliRunner().invoke(app, ["data", "fetch", "mnist", "--data-dir", str(data_dir)])


def test_fetch_leaves_what_source_torchvision_reads(mirror, tmp_path):
    from harness.builtins.datasets import MNIST

    _, files = mirror
    data_dir = tmp_path / "data"
    result = fetch(data_dir)
    assert result.exit_code == 0, result.output
    assert "6 training and 4 test digits" in result.stdout
    raw = data_dir / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(files)  # the IDX files, no archives
    for name, content in files.items():
        assert (raw / name).read_bytes() == content
    train = MNIST(source="torchvision").load("train", data_dir)
    assert train.x.shape == (6, 1, 28, 28)
    pixels = np.frombuffer(files["train-images-idx3-ubyte"][16:], dtype=np.uint8).reshape(6, -1)
    served = zip(map(bytes, pixels), files["train-labels-idx1-ubyte"][8:], strict=True)
    read = ((train.x.numpy().reshape(6, -1) + 1) * 127.5).round().astype(np.uint8)
    loaded = zip(map(bytes, read), train.y.tolist(), strict=True)
    assert sorted(loaded) == sorted(served)  # the same digits and labels (in any order)

    again = fetch(data_dir)  # already there: nothing downloaded, same answer
    assert again.exit_code == 0 and "6 training and 4 test digits" in again.stdout


def test_a_checksum_mismatch_is_one_line_and_leaves_no_archive(mirror, tmp_path):
    served, _ = mirror
    archive = served / "train-labels-idx1-ubyte.gz"
    archive.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))  # other bytes
    result = fetch(tmp_path / "data")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train-labels-idx1-ubyte.gz" in errors[0]
    assert "md5 checksum mismatch" in errors[0]
    assert not list((tmp_path / "data" / "MNIST" / "raw").glob("*.gz"))


def test_an_unreachable_mirror_fails_in_one_line(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{port}/")
    result = fetch(tmp_path / "data")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: MNIST download")
    assert f"127.0.0.1:{port}" in result.stderr and "refused" in result.stderr.lower()


def test_validate_points_to_the_fetch_command(write_suite, tmp_path):
    path = write_suite(
        """
        name: full
        dataset: {name: mnist, source: torchvision}
        architecture: {name: dcgan28, width: 8}
        train: {steps: 2, batch_size: 8}
        strategies: {gp: {loss: wasserstein, constraint: gradient_penalty}}
        seeds: [0]
        eval: {every: 2, samples: 8}
        metrics: [mode_coverage]
        """
    )
    for extra in ([], ["--data-dir", str(tmp_path)]):
        result = CliRunner().invoke(app, ["validate", str(path), *extra])
        assert result.exit_code == 2
        assert "harness data fetch mnist --data-dir" in result.stderr


def test_a_mirror_that_never_answers_is_given_up_on(tmp_path, monkeypatch):
    from harness import data_fetch

    monkeypatch.setattr(data_fetch, "DEADLINE_S", 0.5)
    monkeypatch.setattr(data_fetch, "SOCKET_TIMEOUT_S", 2.0)  # the abandoned thread ends soon
    with socket.socket() as silent:  # accepts connections into its backlog, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{silent.getsockname()[1]}/")
        result = fetch(tmp_path / "data")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: MNIST download: no answer from http://127.0.0.1:")
    assert result.stderr.count("\n") == 1
