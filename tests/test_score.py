"""harness score: samples made elsewhere, measured with a run's metric plugins and protocol."""

import math

import numpy as np
import pytest
import torch
from conftest import TOY_SUITE
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

import harness
from harness.builtins.datasets import MNIST, Grid25, Ring8
from harness.cli import app
from harness.core.errors import HarnessError
from harness.run.scoring import to_samples

MNIST_METRICS = ["mode_coverage", "fid"]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def digits():
    return MNIST().load("test")


@pytest.fixture(scope="module")
def mnist_scores(digits, tmp_path_factory):
    """Real test digits ([-1, 1] floats in an .npy), 2,000 copies of one digit (uint8 in a
    .pt) and half of each ([0, 1] floats in an .npz), scored through files."""
    folder = tmp_path_factory.mktemp("samples")
    real = digits.x[:1000].numpy()
    one = digits.x[digits.y == 3][0]
    copies = ((one + 1) * 127.5).round().to(torch.uint8).expand(2000, 1, 28, 28).clone()
    mix = np.concatenate([real[:500], np.repeat(one.numpy()[None], 500, 0)])
    np.save(folder / "real.npy", real)
    torch.save(copies, folder / "copies.pt")
    np.savez(folder / "mix.npz", x=(mix + 1) / 2)
    return {
        name: harness.score(folder / file, dataset="mnist", metrics=MNIST_METRICS)
        for name, file in [("real", "real.npy"), ("copies", "copies.pt"), ("mix", "mix.npz")]
    }


def test_real_digits_cover_ten_classes_near_the_floor(mnist_scores):
    real = mnist_scores["real"]
    assert real["modes_covered"] == 10 and real["fid_mnist_samples"] == 1000
    assert real["fid_mnist"] < 1.5 * real["fid_mnist_floor"]


def test_one_digit_copied_covers_one_class_far_from_the_floor(mnist_scores):
    copies = mnist_scores["copies"]
    assert copies["modes_covered"] == 1 and copies["fid_mnist_samples"] == 2000
    assert copies["fid_mnist"] > 20 * copies["fid_mnist_floor"]
    assert copies["kl_to_uniform"] == pytest.approx(math.log(10), abs=1e-6)


def test_a_half_half_mix_lies_in_between(mnist_scores):
    real, mix, copies = (mnist_scores[k] for k in ("real", "mix", "copies"))
    assert real["fid_mnist"] < mix["fid_mnist"] < copies["fid_mnist"]
    assert real["kl_to_uniform"] < mix["kl_to_uniform"] < copies["kl_to_uniform"]


def test_every_accepted_range_and_layout_maps_to_the_same_samples(digits, tmp_path):
    x = digits.x[:40]
    as_bytes = ((x + 1) * 127.5).round().to(torch.uint8)
    exact = as_bytes.float() / 127.5 - 1
    for name, layout in [("pt", as_bytes.numpy()), ("nhwc", as_bytes.permute(0, 2, 3, 1))]:
        assert torch.equal(to_samples(layout, (1, 28, 28), name), exact), name
    assert torch.allclose(to_samples(as_bytes.float() / 255, (1, 28, 28)), exact, atol=1e-6)
    assert torch.allclose(to_samples(exact[:, 0].numpy(), (1, 28, 28)), exact)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(as_bytes[:, 0].numpy()):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    from_pngs = harness.score(folder, dataset="mnist", metrics=["mode_coverage"])
    assert from_pngs == harness.score(exact, dataset="mnist", metrics=["mode_coverage"])


def test_toys_real_samples_cover_every_mode_and_w1_is_exact():
    ring = Ring8().load("test").x[:1000]
    same = harness.score(ring.numpy(), dataset="ring8")
    assert same["modes_covered"] == 8 and same["hq_fraction"] > 0.99
    assert same["w1_exact"] == 0.0  # the same samples as the reference
    assert "w1_critic" not in same and "w1_gap" not in same  # no critic to estimate with
    shift = torch.tensor([0.3, -0.4])  # translating a set moves it by exactly |d| in W1
    moved = harness.score(ring + shift, dataset="ring8", metrics=["transport"])
    assert moved["w1_exact"] == pytest.approx(0.5, abs=1e-5)
    grid = harness.score(Grid25().load("test").x[:2000], dataset="grid25")
    assert grid["modes_covered"] == 25 and grid["reverse_kl"] < 0.02


def write_bad(kind, folder):
    """A bad samples file or folder, and the text its one-line error must contain."""
    path = folder / {"unreadable": "bad.npy", "empty": "empty", "suffix": "x.txt"}.get(
        kind, f"{kind}.npy"
    )
    arrays = {
        "shape": (
            np.zeros((10, 28, 27), np.float32),
            "shape (10, 28, 27), expected (N, 1, 28, 28)",
        ),
        "nan": (np.full((20, 1, 28, 28), np.nan, np.float32), "NaN or infinite"),
        "range": (np.full((20, 1, 28, 28), 2.0, np.float32), "values span [2, 2]"),
        "ints": (np.full((20, 28, 28), 300, np.int16), "expected 0–255"),
        "few": (np.zeros((5, 28, 28), np.uint8), "metric fid needs at least 10"),
        "dtype": (np.zeros((20, 28, 28), bool), "not numeric"),
        "none": (np.zeros((0, 28, 28), np.uint8), "no samples"),
    }
    if kind in arrays:
        np.save(path, arrays[kind][0])
        return path, arrays[kind][1]
    if kind == "unreadable":
        path.write_bytes(b"not an array")
        return path, "cannot read"
    if kind == "empty":
        path.mkdir()
        return path, "no .png files"
    if kind == "suffix":
        path.write_text("1 2 3")
        return path, "expected .npy, .npz, .pt"
    return folder / "missing.npy", "no such file"


BAD = ["shape", "nan", "range", "ints", "few", "dtype", "none", "unreadable", "empty", "suffix"]


@pytest.mark.parametrize("kind", [*BAD, "missing"])
def test_bad_samples_are_one_line_exit_2_and_write_nothing(kind, tmp_path):
    path, message = write_bad(kind, tmp_path)
    store = tmp_path / "store"
    result = cli(
        "score", path, "--dataset", "mnist", "--log", "--tracking-uri",
        f"sqlite:///{store / 'mlflow.db'}",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and str(path) in lines[0]
    assert not store.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mnits"], "did you mean 'mnist'"),
        (["--dataset", "ring8", "--metrics", "fdi"], "did you mean 'fid'"),
        (["--dataset", "ring8", "--log", "--name", "a b"], "--name 'a b'"),
        (["--dataset", "ring8", "--experiment", "x"], "add --log"),
        (["--dataset", "ring8", "--metrics", "lipschitz"], "needs a critic"),
        (["--dataset", "ring8", "--param", "nn=5"], "did you mean 'n'"),
        (["--dataset", "ring8", "--param", "n"], "KEY=VALUE"),
        (["--dataset", "ring8", "--param", "n=true"], "got a boolean"),
    ],
)
def test_bad_options_are_one_line_exit_2(args, message, tmp_path):
    path = tmp_path / "points.npy"
    np.save(path, Ring8().load("test").x[:50].numpy())
    store = tmp_path / "store"
    result = cli("score", path, *args, "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not store.exists()


def test_dataset_parameters_reach_the_dataset(tmp_path):
    path = tmp_path / "points.npy"
    np.save(path, Ring8().load("test").x[:50].numpy())
    result = cli("score", path, "--dataset", "ring8", "--param", "n=60", "--metrics", "transport")
    assert result.exit_code == 0, result.output
    # the reference is the first 50 test points of a 60-point split: other points than above
    assert float(result.output.split("w1_exact")[1].split()[1]) > 0


def test_real_samples_give_the_ceiling_and_out_writes_one_csv_row(tmp_path):
    import pandas as pd

    out = tmp_path / "ceiling.csv"
    result = cli("score", "--real", 400, "--dataset", "grid25", "--out", out)
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out).iloc[0]
    assert row["samples"] == "400 real samples" and row["dataset"] == "grid25"
    assert row["modes_covered"] == 25 and row["w1_exact"] == 0.0  # the reference's own points
    direct = harness.score(None, dataset="grid25", real=400)
    assert direct["reverse_kl"] == pytest.approx(row["reverse_kl"])


@pytest.mark.parametrize(
    ("with_file", "args", "message"),
    [
        (True, ["--real", 5], "give the samples to score or --real N, one of them"),
        (False, [], "give the samples to score or --real N, one of them"),
        (False, ["--real", 0], "--real 0: give 1 to 100,000"),
        (False, ["--real", 10**9], "give 1 to 100,000"),
    ],
)
def test_real_is_instead_of_samples_and_bounded(with_file, args, message, tmp_path):
    path = tmp_path / "points.npy"
    np.save(path, Ring8().load("test").x[:50].numpy())
    files = [path] if with_file else []
    result = cli("score", *files, *args, "--dataset", "ring8", "--out", tmp_path / "x.csv")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_out_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    result = cli("score", "--real", 50, "--dataset", "ring8", "--out", tmp_path / "dir.csv")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "dir.csv" in result.stderr


def test_python_errors_are_harness_errors():
    with pytest.raises(HarnessError, match="NaN"):
        harness.score(np.full((10, 2), np.nan), dataset="ring8")


def test_logged_scores_sit_beside_trained_strategies(write_suite, tmp_path):
    suite = write_suite(TOY_SUITE)
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    assert cli("run", suite, "--seeds", "0", "--tracking-uri", uri).exit_code == 0
    path = tmp_path / "ring.npy"
    np.save(path, Ring8(n=2000).load("test").x[:200].numpy())
    result = cli(
        "score", path, "--dataset", "ring8", "--metrics", "mode_coverage", "--log",
        "--suite", suite, "--tracking-uri", uri,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "logged as strategy score:ring in experiment tiny" in result.output
    assert "note:" not in result.output  # 200 samples: the suite's evaluation protocol
    table = cli("table", suite, "--tracking-uri", uri, "--metrics", "modes_covered")
    assert table.exit_code == 0, table.output
    assert "| score:ring | 1 | 0 | **8** |" in table.output
    assert "| wgan-gp | 1 |" in table.output and "| bce | 1 |" in table.output
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.`harness.kind` = 'score'"
    )
    assert run.data.params["eval.samples"] == "200" and run.data.params["dataset.name"] == "ring8"
    assert run.data.params["identity.metric.mode_coverage"].startswith("harness==")
    assert "eval_protocol" in run.data.params and "torch_version" in run.data.params
    np.save(path, Ring8(n=2000).load("test").x[:100].numpy())
    other = cli(
        "score", path, "--dataset", "ring8", "--metrics", "mode_coverage", "--log",
        "--suite", suite, "--tracking-uri", uri, "--name", "ring100",
    )  # fmt: skip
    assert "note: score:ring100 was measured under protocol" in other.output, other.output
    report = cli(
        "report", suite, "--out", tmp_path / "report", "--tracking-uri", uri,
        "--protocol", "gauss-3sigma-v1:n200",
    )  # fmt: skip
    assert report.exit_code == 0, report.output
    assert "score:ring" in (tmp_path / "report" / "table.md").read_text()


# --- files and tensors a neighbour could hand `harness score` -----------------------------


def refused(path, message: str, dataset: str = "mnist", seconds: float = 5.0):
    import time

    start = time.perf_counter()
    result = cli("score", path, "--dataset", dataset)
    assert time.perf_counter() - start < seconds
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert message in lines[0], lines[0]


def test_a_fifo_is_refused_at_once_as_a_file_and_inside_a_folder(tmp_path):
    import os

    os.mkfifo(tmp_path / "x.npy")
    refused(tmp_path / "x.npy", "not a regular file")
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "0.png")
    os.mkfifo(folder / "a.png")
    refused(folder, "a.png: not a regular file")


def test_large_images_are_refused_from_their_headers_before_any_is_decoded(tmp_path, monkeypatch):
    import subprocess
    import sys

    from PIL import ImageFile

    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(24):  # ~80 KB files that decode to 81 MB each, 1.9 GB together
        Image.new("L", (9000, 9000)).save(folder / f"{i:02d}.png", optimize=True)
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1) or load(self))
    refused(folder, "9000×9000 pixels, expected 28×28")
    assert decoded == []  # headers only
    code = (
        "import resource\nfrom harness.cli import app\ntry:\n"
        f"    app(['score', {str(folder)!r}, '--dataset', 'mnist'])\n"
        "finally:\n    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "9000×9000 pixels, expected 28×28" in done.stderr, done.stderr
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert peak_mb < 2000, peak_mb  # torch, MLflow and MNIST; decoding all would add 3.9 GB


def test_a_compressed_bomb_and_too_many_samples_are_refused_from_headers(tmp_path):
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((700_000, 28, 28), np.uint8))  # 549 MB of zeros
    assert bomb.stat().st_size < 2_000_000
    refused(bomb, "700,000 samples; at most 200,000")
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    refused(objects, "Python objects")


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (torch.zeros(4, 2).to_sparse(), "sparse_coo tensor"),
        (torch.zeros(4, 2, device="meta"), "meta tensor"),
        (torch.zeros(4, 2, dtype=torch.complex64), "not a real number type"),
        (torch.zeros(300_000, 2), "300,000 samples"),
    ],
)
def test_odd_tensors_are_one_line(tensor, message):
    with pytest.raises(HarnessError, match=message):
        to_samples(tensor, (2,))


def test_half_and_bfloat16_samples_are_widened():
    points = torch.randn(50, 2)
    for dtype in (torch.bfloat16, torch.float16):
        assert torch.equal(to_samples(points.to(dtype), (2,)), points.to(dtype).float())
