"""Hostile input, round two: what a user or a neighbour can hand the commands other than a suite
file (benchmarks/hostile_cases.py covers those): sample files for `harness score`, stores and
output paths for `table`/`report`/`run`, resource and other options, signals, a full disk and a
planted checkpoint.

    uv run python benchmarks/hostile_commands.py [--only CLASS]

Clean means: exit code 2 (0 for the inputs that are odd but valid), one line on stderr that
starts with ``error:`` and holds no traceback, done within 30 s, and nothing created that the
case names (a store, a folder). The signal case is clean when the workers are gone, exit 143
and one line; the checkpoint case when the planted code did not run and the run finished.
Prints a row per class (cases, clean) and every case that is not clean.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SUITE = textwrap.dedent(
    """\
    name: tiny
    dataset: {name: ring8, n: 2000}
    architecture: {name: mlp, width: 16, depth: 2, z_dim: 2}
    train: {steps: 6, batch_size: 32, n_critic: 2, log_every: 3}
    strategies:
      gp: {loss: wasserstein, constraint: gradient_penalty}
      bce: {loss: bce}
    seeds: [0]
    eval: {every: 3, samples: 200}
    metrics: [mode_coverage]
    """
)


def harness(*args: str, timeout: float = 30, env: dict | None = None):
    """(exit code, stdout, stderr, seconds) of `harness ARGS` in a fresh process."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, "HARNESS_JOBS": "1", **(env or {})},
        )
    except subprocess.TimeoutExpired:
        return None, "", "timed out", timeout
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - start


def clean(result, code: int = 2, absent: tuple[Path, ...] = ()) -> str | None:
    """Why ``result`` is not clean, or None."""
    rc, _, err, _ = result
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if rc is None:
        return "hung (30 s)"
    if rc != code:
        return f"exit {rc}, expected {code}: {err.strip()[-200:]}"
    if code != 0 and (len(lines) != 1 or not lines[0].startswith("error:")):
        return f"{len(lines)} stderr lines: {err.strip()[:200]}"
    if "Traceback" in err:
        return "traceback"
    created = [str(p) for p in absent if p.exists()]
    return f"created {', '.join(created)}" if created else None


def score_cases(tmp: Path) -> dict[str, tuple]:
    """Files handed to `harness score --dataset mnist`: (path, expected code)."""
    cases = {}

    def file(name: str, write) -> Path:
        path = tmp / name
        write(path)
        return path

    cases["missing file"] = (tmp / "nowhere.npy", 2)
    os.mkfifo(tmp / "fifo.npy")
    cases["FIFO as .npy"] = (tmp / "fifo.npy", 2)
    pngs = tmp / "fifo-pngs"
    pngs.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(pngs / "0.png")
    os.mkfifo(pngs / "a.png")
    cases["FIFO in a PNG folder"] = (pngs, 2)
    cases["character device"] = (Path("/dev/zero"), 2)
    cases["random bytes .npy"] = (file("rand.npy", lambda p: p.write_bytes(os.urandom(4096))), 2)
    cases["truncated .npy"] = (
        file("trunc.npy", lambda p: p.write_bytes(open_npy(np.zeros((10, 28, 28)))[:200])),
        2,
    )
    cases["object .npy"] = (
        file("obj.npy", lambda p: np.save(p, np.array([{}], dtype=object), allow_pickle=True)),
        2,
    )
    cases["empty .npz"] = (file("empty.npz", lambda p: np.savez(p)), 2)
    cases["two unnamed arrays"] = (
        file("two.npz", lambda p: np.savez(p, a=np.zeros(3), b=np.zeros(3))),
        2,
    )
    cases["compressed bomb .npz"] = (
        file("bomb.npz", lambda p: np.savez_compressed(p, x=np.zeros((700_000, 28, 28), np.uint8))),
        2,
    )
    cases["pickle .pt"] = (file("pickle.pt", lambda p: torch.save({"x": Planted()}, p)), 2)
    cases["strings .pt"] = (file("strings.pt", lambda p: torch.save({"x": "abc"}, p)), 2)
    cases["complex .pt"] = (
        file("complex.pt", lambda p: torch.save(torch.zeros(4, 1, 28, 28, dtype=torch.cfloat), p)),
        2,
    )
    cases["sparse .pt"] = (
        file("sparse.pt", lambda p: torch.save(torch.zeros(4, 784).to_sparse(), p)),
        2,
    )
    cases["bfloat16 .pt (valid)"] = (
        file("bf16.pt", lambda p: torch.save(torch.rand(20, 1, 28, 28).to(torch.bfloat16), p)),
        0,
    )
    cases["NaN values"] = (file("nan.npy", lambda p: np.save(p, np.full((20, 28, 28), np.nan))), 2)
    cases["ints beyond 255"] = (
        file("big.npy", lambda p: np.save(p, np.full((20, 28, 28), 999))),
        2,
    )
    cases["wrong shape"] = (file("shape.npy", lambda p: np.save(p, np.zeros((20, 27, 27)))), 2)
    cases["no samples"] = (file("zero.npy", lambda p: np.save(p, np.zeros((0, 28, 28)))), 2)
    cases["text as .npy"] = (file("text.npy", lambda p: p.write_text("hello")), 2)
    big = tmp / "big-pngs"
    big.mkdir()
    for i in range(8):
        Image.new("L", (9000, 9000)).save(big / f"{i}.png", optimize=True)
    cases["9000x9000 PNGs"] = (big, 2)
    mixed = tmp / "mixed-pngs"
    mixed.mkdir()
    Image.new("L", (28, 28)).save(mixed / "0.png")
    Image.new("L", (28, 29)).save(mixed / "1.png")
    cases["PNGs of two sizes"] = (mixed, 2)
    corrupt = tmp / "corrupt-pngs"
    corrupt.mkdir()
    (corrupt / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    cases["corrupt PNG"] = (corrupt, 2)
    loop = tmp / "loop.npy"
    loop.symlink_to(loop)
    cases["symlink loop"] = (loop, 2)
    return cases


class Planted:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path(tempfile.gettempdir()) / "hostile-commands-code-ran"


def open_npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def store_cases(tmp: Path) -> dict[str, tuple]:
    """(argv, expected code, paths that must not exist afterwards)."""
    (tmp / "random.db").write_bytes(os.urandom(8192))
    import sqlite3

    sqlite3.connect(tmp / "other.db").execute("create table t (x)")
    (tmp / "a-dir.db").mkdir()
    suite = tmp / "suite.yaml"
    suite.write_text(SUITE)
    new = tmp / "new" / "dir"
    cases = {}
    for command in ("table", "report"):
        out = ["--out", tmp / f"{command}-out"] if command == "report" else []
        for name, uri in {
            "random-bytes store": f"sqlite:///{tmp / 'random.db'}",
            "non-MLflow SQLite": f"sqlite:///{tmp / 'other.db'}",
            "missing store": f"sqlite:///{new / 'x.db'}",
            "directory as store": f"sqlite:///{tmp / 'a-dir.db'}",
            "in-memory sqlite://": "sqlite://",
            "dead server": "http://127.0.0.1:9/",
        }.items():
            cases[f"{command}: {name}"] = ([command, suite, "--tracking-uri", uri, *out], 2, (new,))
    cases["report --out a file"] = (["report", suite, "--out", tmp / "random.db"], 2, ())
    cases["table --out a directory"] = (["table", suite, "--out", tmp], 2, ())
    cases["run: store folder missing"] = (
        ["run", suite, "--tracking-uri", f"sqlite:///{new / 'x.db'}"],
        2,
        (new,),
    )
    cases["run: in-memory store"] = (["run", suite, "--tracking-uri", "sqlite://"], 2, ())
    return cases


def option_cases(tmp: Path) -> dict[str, tuple]:
    suite = tmp / "suite.yaml"
    suite.write_text(SUITE)
    store = ["--tracking-uri", f"sqlite:///{tmp / 'opts.db'}"]
    bad = {
        "--threads 0": ["--threads", "0"],
        "--threads 2000": ["--threads", "2000"],
        "--threads abc": ["--threads", "abc"],
        "--jobs 0": ["--jobs", "0"],
        "--jobs 99999": ["--jobs", "99999"],
        "--max-runs 2e9": ["--max-runs", "2000000000"],
        "--seeds abc": ["--seeds", "abc"],
        "--device cuda:99": ["--device", "cuda:99"],
        "--device foo": ["--device", "foo"],
        "--data-dir /proc/1/root": ["--data-dir", "/proc/1/root"],
        "--only ,,,": ["--only", ",,,"],
        "--only ''": ["--only", ""],
        "--only nope": ["--only", "nope"],
        "--rerun ''": ["--rerun", ""],
        "--profile nope": ["--profile", "nope"],
        "--checkpoint-every 0": ["--checkpoint-every", "0"],
        "--precision fp8": ["--precision", "fp8"],
        "--executor nope": ["--executor", "nope"],
        "--gpus-per-run -1": ["--gpus-per-run", "-1"],
        "unknown option": ["--jbos", "2"],
    }
    cases = {
        f"run {k}": (["run", suite, *v, *store], 2, (tmp / "opts.db",)) for k, v in bad.items()
    }
    cases["run: missing argument"] = (["run"], 2, ())
    cases["validate --max-runs 2e9"] = (["validate", suite, "--max-runs", "2000000000"], 2, ())
    points = tmp / "points.npy"
    np.save(points, np.zeros((50, 2), np.float32))
    out = tmp / "scores.csv"
    real = {
        "--real with samples": [points, "--real", "5"],
        "neither samples nor --real": [],
        "--real 0": ["--real", "0"],
        "--real -3": ["--real", "-3"],
        "--real 10**12": ["--real", str(10**12)],
        "--real abc": ["--real", "abc"],
    }
    for name, argv in real.items():
        cases[f"score {name}"] = (["score", *argv, "--dataset", "ring8", "--out", out], 2, (out,))
    cases["score --out a directory"] = (
        ["score", "--real", "50", "--dataset", "ring8", "--out", tmp], 2, ())  # fmt: skip
    return cases


def sweep_cases(tmp: Path) -> dict[str, tuple]:
    sweeps = {
        "randint beyond int64": "random: {n: 2, params: {n_critic: {randint: [1, 1.0e+20]}}}",
        "one parameter, two spellings": "settings: {A: {optimizer: {lr: 1.0e-4}, optimizer.lr: 2}}",
        "n_critic twice in a grid": "grid: {n_critic: [1, 2], train.n_critic: [3]}",
        "unknown path": "grid: {optimizer.lrr: [1.0e-4]}",
    }
    cases = {}
    for name, sweep in sweeps.items():
        path = tmp / f"{name.replace(' ', '-')}.yaml"
        path.write_text(SUITE + f"sweep: {{{sweep}}}\n")
        cases[name] = (["validate", path], 2, ())
    return cases


def run_table(groups: dict[str, dict[str, tuple]], tmp: Path) -> dict[str, list]:
    results = defaultdict(list)
    for group, cases in groups.items():
        for name, case in cases.items():
            if group == "score":
                path, code = case
                result = harness("score", path, "--dataset", "mnist")
                problem = clean(result, code)
            else:
                argv, code, absent = case
                problem = clean(harness(*argv), code, absent)
            results[group].append((name, problem))
            print(f"  {group}: {name}: {'clean' if problem is None else problem}", flush=True)
    return results


def signal_case(tmp: Path) -> str | None:
    """SIGTERM to `harness run --jobs 2` while both workers train."""
    import psutil

    suite = tmp / "long.yaml"
    suite.write_text(SUITE.replace("steps: 6", "steps: 4000").replace("every: 3,", "every: 1000,"))
    db = tmp / "signal" / "mlflow.db"
    db.parent.mkdir()
    cmd = [sys.executable, "-m", "harness.cli", "run", suite, "--jobs", "2", "--tracking-uri"]
    proc = subprocess.Popen([*map(str, cmd), f"sqlite:///{db}"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(db.parent.glob("checkpoints/*.claim"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    time.sleep(1)
    alive = [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    if alive:
        return f"workers left: {alive}"
    lines = err.strip().splitlines()
    if proc.returncode != 143 or len(lines) != 1 or not lines[0].startswith("terminated"):
        return f"exit {proc.returncode}: {err.strip()[:300]}"
    return None


def checkpoint_case(tmp: Path) -> str | None:
    """A pickle planted as the checkpoint of a resumable run."""
    from harness.run.loading import load_suite
    from harness.run.runner import Progress, RunSettings, run_suite
    from harness.run.store import Store

    class Stop(Progress):
        def run_started(self, spec):
            def update(step, values):
                if step >= 3:
                    raise KeyboardInterrupt

            return update

    suite_path = tmp / "ckpt.yaml"
    suite_path.write_text(SUITE)
    suite, registry = load_suite(suite_path, seeds=[0])
    store = Store(f"sqlite:///{tmp / 'ckpt' / 'mlflow.db'}")
    settings = RunSettings(device="cpu", checkpoint_every=1)
    with contextlib.suppress(KeyboardInterrupt):
        run_suite(suite, registry, store, settings, progress=Stop())
    MARKER.unlink(missing_ok=True)
    for checkpoint in store.checkpoint_dir.glob("*/checkpoint.pt"):
        torch.save({"step": 3, "x": Planted()}, checkpoint)
    outcomes = run_suite(suite, registry, store, settings)
    if MARKER.exists():
        return "the planted code ran"
    if any(o.status not in ("finished", "skipped") for o in outcomes):
        return f"outcomes {[o.status for o in outcomes]}"
    return None


def disk_case(tmp: Path) -> str | None:
    """A disk that fills mid-run (a 3 MB tmpfs; skipped where mounting is not allowed)."""
    disk = tmp / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)])
    if mounted.returncode:
        return "skipped: cannot mount a tmpfs here"
    try:
        db = disk / "mlflow.db"
        make = "import pathlib, harness.run.store as s; s.create_sqlite_store(pathlib.Path(%r))"
        subprocess.run([sys.executable, "-c", make % str(db)], check=True)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 120 * 1024))
        suite = tmp / "disk.yaml"
        suite.write_text(SUITE.replace("steps: 6", "steps: 60"))
        result = harness("run", suite, "--tracking-uri", f"sqlite:///{db}")
    finally:
        subprocess.run(["umount", str(disk)])
    problem = clean(result)
    if problem is None and "space left" not in result[2]:
        return f"the line does not name the cause: {result[2].strip()}"
    return problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="one class: score, stores, options, sweeps, other")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        groups = {
            "score": lambda: score_cases(tmp / "score"),
            "stores": lambda: store_cases(tmp / "stores"),
            "options": lambda: option_cases(tmp / "options"),
            "sweeps": lambda: sweep_cases(tmp / "sweeps"),
        }
        chosen = {k: v for k, v in groups.items() if args.only in (None, k)}
        for name in chosen:
            (tmp / name).mkdir()
        results = run_table({k: make() for k, make in chosen.items()}, tmp)
        if args.only in (None, "other"):
            (tmp / "other").mkdir()
            for name, case in (
                ("SIGTERM with --jobs 2", signal_case),
                ("planted checkpoint pickle", checkpoint_case),
                ("disk full mid-run", disk_case),
            ):
                problem = case(tmp / "other")
                results["other"].append((name, problem))
                print(f"  other: {name}: {'clean' if problem is None else problem}", flush=True)
    print("\n| class | cases | clean |\n|---|---|---|")
    for group, rows in results.items():
        skipped = sum(1 for _, p in rows if p and p.startswith("skipped"))
        ok = sum(1 for _, p in rows if p is None)
        print(f"| {group} | {len(rows) - skipped} | {ok} |")
    total = sum(len(rows) for rows in results.values())
    ok = sum(1 for rows in results.values() for _, p in rows if p is None)
    print(f"| all | {total} | {ok} ({ok / total:.0%}) |")
    bad = [
        (g, n, p)
        for g, rows in results.items()
        for n, p in rows
        if p and not p.startswith("skipped")
    ]
    for group, name, problem in bad:
        print(f"- {group}: {name}: {problem}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
