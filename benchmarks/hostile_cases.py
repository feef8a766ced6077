"""Hostile suite files through ``harness validate`` and ``harness run``: every one must be
refused cleanly (exit 2, one line on stderr, no traceback, no control characters, nothing
written: no tracking store, no new file).

    uv run python benchmarks/hostile_cases.py            # a table of classes: tried, clean
    uv run python benchmarks/hostile_cases.py --verbose  # and each case's error line

The cases are generated here, in classes: YAML syntax, tags, alias bombs, deep nesting,
duplicate keys, wrong types, booleans, NaN/inf, out-of-range part parameters, unknown names,
unsafe names, bad paths, missing data, plugins that raise or exit. Both commands run in this
process through typer's CliRunner (an uncaught SystemExit shows as its exit code); a case that
hangs is stopped after 20 s and counts as not clean.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BASE = """\
name: tiny
dataset: {name: ring8, n: 2000}
architecture: {name: mlp, width: 16, depth: 2, z_dim: 2}
train: {steps: 2, batch_size: 32, n_critic: 2, log_every: 1}
strategies:
  wgan-gp: {loss: wasserstein, constraint: gradient_penalty}
  bce: {loss: bce, constraint: none}
seeds: [0, 1]
eval: {every: 2, samples: 200}
metrics: [mode_coverage]
"""
GP = "{loss: wasserstein, constraint: gradient_penalty}"
SOCKETS: list[socket.socket] = []  # kept open while the cases run
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\u2028\u2029\u202a-\u202e]")


@dataclass
class Case:
    kind: str
    name: str
    text: str | bytes | None = None  # the suite file's content (None: ``setup`` makes it)
    args: tuple[str, ...] = ()  # extra options for both commands
    setup: Callable[[Path], Path] | None = None  # makes the suite path in a case folder
    plugin: str | None = None  # source of a suite-local plugin module
    run_only: bool = False  # caught by run's dry build; validate (torch-free) accepts it


def sub(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def strategy(value: str) -> str:
    return sub(GP, value)


def metric(value: str) -> str:
    return sub("metrics: [mode_coverage]", f"metrics: [{value}]")


def cases() -> list[Case]:
    out: list[Case] = []

    def add(kind: str, name: str, text=None, **kw) -> None:
        out.append(Case(kind, name, text, **kw))

    # YAML syntax
    for name, text in {
        "unclosed flow mapping": sub("{name: ring8, n: 2000}", "{name: ring8, n: 2000"),
        "unclosed list": sub("seeds: [0, 1]", "seeds: [0, 1"),
        "bad indentation": BASE.replace("  bce:", "     bce:"),
        "tab indentation": BASE.replace("  bce:", "\tbce:"),
        "unterminated quote": sub("name: tiny", "name: 'tiny"),
        "binary bytes": b"\x00\x01\x02\xff",
        "invalid utf-8": BASE.encode().replace(b"tiny", b"ti\xffny"),
        "empty file": "",
        "only a comment": "# nothing\n",
        "a scalar": "just text\n",
        "a list": "- name: tiny\n",
        "two documents": BASE + "---\nname: other\n",
        "stray colon": sub("name: tiny", "name: tiny: x"),
    }.items():
        add("yaml syntax", name, text)
    # tags
    for name, tag in {
        "python object": "!!python/object/apply:os.system ['echo pwned']",
        "python name": "!!python/name:os.system",
        "python module": "!!python/module:os",
        "custom tag": "!include other.yaml",
        "set": "!!set {a, b}",
        "binary": "!!binary aGVsbG8=",
        "timestamp": "2001-12-14t21:59:43.10-05:00",
    }.items():
        add("yaml tags", name, sub("name: tiny", f"name: {tag}"))
    # alias bombs
    for width, depth in ((10, 8), (9, 9), (100, 4), (3, 20)):
        lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
        for i in range(1, depth):
            lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
        add("alias bombs", f"{width}^{depth}", "\n".join(lines) + "\n")
    add("alias bombs", "recursive alias", "a: &a [*a]\n")
    # deep nesting
    add("deep nesting", "lists 5000", "a: " + "[" * 5000 + "]" * 5000 + "\n")
    add("deep nesting", "mappings 5000", "a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n")
    add("deep nesting", "block mappings 2000", "".join(" " * i + "a:\n" for i in range(2000)))
    add("deep nesting", "in a part's params", sub("n: 2000", "n: " + "[" * 3000 + "]" * 3000))
    # duplicate keys
    for name, (old, new) in {
        "top-level name": ("name: tiny\n", "name: tiny\nname: other\n"),
        "top-level train": ("metrics:", "train: {steps: 9}\nmetrics:"),
        "strategy": (
            "  bce: {loss: bce, constraint: none}\n",
            "  bce: {loss: bce}\n  bce: {loss: hinge}\n",
        ),
        "train field": ("n_critic: 2,", "n_critic: 2, n_critic: 5,"),
        "dataset param": ("n: 2000}", "n: 2000, n: 10}"),
        "architecture param": ("width: 16,", "width: 16, width: 32,"),
        "constraint param": (GP, "{loss: hinge, constraint: {name: weight_clip, c: 1, c: 2}}"),
        "metric param": (
            "metrics: [mode_coverage]",
            "metrics: [{name: mode_coverage, min_count: 1, min_count: 2}]",
        ),
        "seeds": ("seeds: [0, 1]", "seeds: [0, 1]\nseeds: [2]"),
        "profile": ("metrics:", "profiles: {a: {seeds: [1]}, a: {seeds: [2]}}\nmetrics:"),
        "inside a profile": ("metrics:", "profiles: {a: {seeds: [1], seeds: [2]}}\nmetrics:"),
    }.items():
        add("duplicate keys", name, sub(old, new))
    # wrong types
    for name, (old, new) in {
        "name a number": ("name: tiny", "name: 123"),
        "strategies a list": ("strategies:\n", "strategies: [a, b]\nx:\n"),
        "seeds a string": ("seeds: [0, 1]", "seeds: zero"),
        "train a string": (
            "train: {steps: 2, batch_size: 32, n_critic: 2, log_every: 1}",
            "train: fast",
        ),
        "steps a word": ("steps: 2", "steps: two"),
        "dataset a number": ("dataset: {name: ring8, n: 2000}", "dataset: 5"),
        "metrics a mapping": ("metrics: [mode_coverage]", "metrics: {mode_coverage: 1}"),
        "plugins a string": ("metrics:", "plugins: mine\nmetrics:"),
        "eval a list": ("eval: {every: 2, samples: 200}", "eval: [2, 200]"),
        "optimizer a string": (GP, "{loss: hinge, optimizer: adam}"),
        "three betas": (GP, "{loss: hinge, optimizer: {name: adam, lr: 0.1, betas: [0, 0.9, 1]}}"),
        "lr a word": (GP, "{loss: hinge, optimizer: {name: adam, lr: fast}}"),
        "width a list": ("width: 16", "width: [16]"),
        "n a string": ("n: 2000", "n: many"),
        "part name a list": ("loss: bce,", "loss: [bce],"),
        "null strategies": ("strategies:\n", "strategies: null\nx:\n"),
    }.items():
        add("wrong types", name, sub(old, new))
    # booleans where numbers are declared
    for name, (old, new) in {
        "steps": ("steps: 2", "steps: true"),
        "batch_size": ("batch_size: 32", "batch_size: true"),
        "n_critic": ("n_critic: 2", "n_critic: false"),
        "log_every": ("log_every: 1", "log_every: true"),
        "z_dim": ("z_dim: 2", "z_dim: true"),
        "a seed": ("seeds: [0, 1]", "seeds: [0, true]"),
        "eval every": ("every: 2", "every: true"),
        "lr": (GP, "{loss: hinge, optimizer: {name: adam, lr: true}}"),
        "width": ("width: 16", "width: true"),
        "n": ("n: 2000", "n: true"),
        "clip c": (GP, "{loss: hinge, constraint: {name: weight_clip, c: true}}"),
        "power iterations": (
            GP,
            "{loss: hinge, constraint: {name: spectral_norm, n_power_iterations: true}}",
        ),
    }.items():
        add("booleans", name, sub(old, new))
    # NaN and infinity
    for name, value in {
        "lr nan": "{loss: hinge, optimizer: {name: adam, lr: .nan}}",
        "lr inf": "{loss: hinge, optimizer: {name: adam, lr: .inf}}",
        "betas nan": "{loss: hinge, optimizer: {name: adam, lr: 0.1, betas: [.nan, 0.9]}}",
        "clip c nan": "{loss: hinge, constraint: {name: weight_clip, c: .nan}}",
        "gp weight inf": "{loss: hinge, constraint: {name: gradient_penalty, weight: .inf}}",
        "gp center nan": "{loss: hinge, constraint: {name: gradient_penalty, center: .nan}}",
        "r1 gamma -inf": "{loss: hinge, constraint: {name: r1, gamma: -.inf}}",
        "orthogonal beta nan": "{loss: hinge, constraint: {name: orthogonal, beta: .nan}}",
    }.items():
        add("nan/inf", name, strategy(value))
    add("nan/inf", "steps inf", sub("steps: 2", "steps: .inf"))
    add("nan/inf", "class_min_share nan", metric("{name: mode_coverage, class_min_share: .nan}"))
    # out of range
    for name, (old, new) in {
        "steps 0": ("steps: 2", "steps: 0"),
        "steps 10^10": ("steps: 2", "steps: 10000000000"),
        "batch_size 0": ("batch_size: 32", "batch_size: 0"),
        "n_critic 1001": ("n_critic: 2", "n_critic: 1001"),
        "z_dim 0": ("z_dim: 2", "z_dim: 0"),
        "seed -1": ("seeds: [0, 1]", "seeds: [-1]"),
        "seed 2^32": ("seeds: [0, 1]", "seeds: [4294967296]"),
        "repeated seeds": ("seeds: [0, 1]", "seeds: [0, 0]"),
        "no seeds": ("seeds: [0, 1]", "seeds: []"),
        "eval samples 0": ("samples: 200", "samples: 0"),
        "mlp width -5": ("width: 16", "width: -5"),
        "mlp depth -1": ("depth: 2", "depth: -1"),
        "ring8 n 0": ("n: 2000", "n: 0"),
        "no strategies": (
            "strategies:\n  wgan-gp: " + GP + "\n  bce: {loss: bce, constraint: none}\n",
            "strategies: {}\n",
        ),
        "dcgan28 on ring8": ("name: mlp, width: 16, depth: 2", "name: dcgan28, width: 4"),
        "dcgan28 width 0": ("name: mlp, width: 16, depth: 2", "name: dcgan28, width: 0"),
    }.items():
        add("out of range", name, sub(old, new))
    for name, value in {
        "lr 0": "{loss: hinge, optimizer: {name: adam, lr: 0}}",
        "beta 1": "{loss: hinge, optimizer: {name: adam, lr: 0.1, betas: [1, 0.9]}}",
        "spectral_norm 0 iterations": "{loss: hinge, constraint: {name: spectral_norm, "
        "n_power_iterations: 0}}",
        "weight_clip c 0": "{loss: hinge, constraint: {name: weight_clip, c: 0}}",
        "gp weight -1": "{loss: hinge, constraint: {name: gradient_penalty, weight: -1}}",
        "gp p 0.5": "{loss: hinge, constraint: {name: gradient_penalty, p: 0.5}}",
        "lp weight -1": "{loss: hinge, constraint: {name: lipschitz_penalty, weight: -1}}",
        "dragan c 0": "{loss: hinge, constraint: {name: dragan, c: 0}}",
        "orthogonal beta 0.6": "{loss: hinge, constraint: {name: orthogonal, beta: 0.6}}",
        "orthogonal group 1": "{loss: hinge, constraint: {name: orthogonal, group_size: 1}}",
        "orthogonal 0 iterations": "{loss: hinge, constraint: {name: orthogonal, iterations: 0}}",
        "strategy n_critic 0": "{loss: hinge, n_critic: 0}",
    }.items():
        add("out of range", name, strategy(value))
    for name, value in {
        "min_count -3": "{name: mode_coverage, min_count: -3}",
        "class_min_share 0": "{name: mode_coverage, class_min_share: 0}",
        "class_min_share 1.5": "{name: mode_coverage, class_min_share: 1.5}",
        "transport 0 samples": "{name: transport, max_samples: 0}",
        "stability tail 0": "{name: stability, tail: 0}",
        "lipschitz -1 samples": "{name: lipschitz, samples: -1}",
    }.items():
        add("out of range", name, metric(value))
    # unknown names: one line, with a suggestion where one is close
    for name, (old, new) in {
        "loss": ("loss: bce,", "loss: bec,"),
        "constraint": (GP, "{loss: wasserstein, constraint: gradient_penalti}"),
        "architecture": ("name: mlp", "name: mpl"),
        "dataset": ("name: ring8", "name: ring9"),
        "metric": ("metrics: [mode_coverage]", "metrics: [mode_covrage]"),
        "part parameter": ("width: 16", "widht: 16"),
        "top-level key": ("strategies:", "strategys:"),
        "train key": ("log_every: 1", "log_evry: 1"),
        "optimizer": (GP, "{loss: hinge, optimizer: {name: adamw, lr: 0.1}}"),
        "precision": ("log_every: 1", "log_every: 1, precision: fp16"),
        "fid_inception weights": (
            "metrics: [mode_coverage]",
            "metrics: [{name: fid_inception, weights: /nonexistent.pt}]",
        ),
    }.items():
        add("unknown names", name, sub(old, new))
    add(
        "unknown names",
        "profile -p",
        BASE + "profiles: {smoke: {seeds: [3]}}\n",
        args=("--profile", "smok"),
    )
    # unsafe names and control characters
    for name, value in {
        "newline": "bad\nname",
        "ANSI escape": "red\x1b[31mx",
        "carriage return": "a\rb",
        "space": "two words",
        "unicode": "naïve",
        "bidi override": "abc\u202edcba",
        "101 characters": "x" * 101,
        "empty": "",
        "slash": "a/b",
    }.items():
        add("unsafe names", f"strategy {name}", sub("  bce:", f"  {json.dumps(value)}:"))
    add("unsafe names", "suite name ANSI", sub("name: tiny", 'name: "t\\e[2Jiny"'))
    add("unsafe names", "profile name newline", BASE + 'profiles: {"a\\nb": {seeds: [1]}}\n')
    add("unsafe names", "unknown loss with ANSI", sub("loss: bce,", 'loss: "b\\e[31mce",'))
    add("unsafe names", "parameter key with newline", sub("width: 16", '"wid\\nth": 16'))
    add("unsafe names", "-p with ANSI", BASE, args=("--profile", "x\x1b[31m"))

    # bad paths
    def fifo(d: Path) -> Path:
        os.mkfifo(d / "suite.yaml")
        return d / "suite.yaml"

    def directory(d: Path) -> Path:
        (d / "suite.yaml").mkdir()
        return d / "suite.yaml"

    def huge(d: Path) -> Path:
        with open(d / "suite.yaml", "wb") as f:
            f.truncate(64 * 2**20)
        return d / "suite.yaml"

    def loop(d: Path) -> Path:
        (d / "suite.yaml").symlink_to(d / "suite.yaml")
        return d / "suite.yaml"

    def dangling(d: Path) -> Path:
        (d / "suite.yaml").symlink_to(d / "gone.yaml")
        return d / "suite.yaml"

    def socket_file(d: Path) -> Path:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(d / "suite.yaml"))
        SOCKETS.append(server)
        return d / "suite.yaml"

    for name, make in {
        "FIFO": fifo,
        "directory": directory,
        "/dev/zero": lambda d: Path("/dev/zero"),
        "/dev/stdin": lambda d: Path("/dev/stdin"),
        "missing": lambda d: d / "missing.yaml",
        "64 MiB file": huge,
        "symlink loop": loop,
        "dangling symlink": dangling,
        "name with newline": lambda d: d / "sui\nte.yaml",
        "unix socket": socket_file,
    }.items():
        add("bad paths", name, setup=make)
    # data a dataset needs
    tv = sub("dataset: {name: ring8, n: 2000}", "dataset: {name: mnist, source: torchvision}")
    stacked = sub(
        "dataset: {name: ring8, n: 2000}",
        "dataset: {name: stacked_mnist, source: torchvision, n: 100}",
    )
    add("missing data", "torchvision without --data-dir", tv)
    add("missing data", "stacked torchvision without --data-dir", stacked)
    add("missing data", "--data-dir missing", tv, args=("--data-dir", "/nonexistent/dir"))
    add("missing data", "--data-dir empty", tv, args=("--data-dir", "EMPTY"))
    add("missing data", "--data-dir a file", tv, args=("--data-dir", "/etc/hostname"))
    # plugins that raise or exit
    for name, source in {
        "SystemExit(0) on import": "raise SystemExit(0)\n",
        "sys.exit(3) on import": "import sys\nsys.exit(3)\n",
        "exception on import": "raise RuntimeError('boom\\nsecond line')\n",
        "GeneratorExit on import": "raise GeneratorExit\n",
        "BaseException subclass": "class Odd(BaseException):\n    pass\nraise Odd('odd')\n",
        "syntax error": "def (:\n",
        "imports a missing module": "import no_such_module_here\n",
        "hook exits": "import harness\n@harness.hookimpl\ndef register_losses(register):\n"
        "    raise SystemExit(4)\n",
        "hook raises": "import harness\n@harness.hookimpl\ndef register_losses(register):\n"
        "    raise ValueError('no')\n",
        "registers a non-part": "import harness\n@harness.hookimpl\n"
        "def register_losses(register):\n    register('x', int)\n",
        "registers a built-in name": "import harness\nfrom harness.parts import Loss\n"
        "@harness.hookimpl\ndef register_losses(register):\n    register('bce', Loss)\n",
        "constructor exits": "import sys, harness\nfrom harness.parts import Loss\n"
        "class L(Loss):\n    def __init__(self):\n        sys.exit(5)\n"
        "@harness.hookimpl\ndef register_losses(register):\n    register('exit_loss', L)\n",
        "dataset check exits": "import sys, harness\nfrom harness.builtins.datasets import Ring8\n"
        "class D(Ring8):\n    def check(self, data_dir=None):\n        sys.exit(6)\n"
        "@harness.hookimpl\ndef register_datasets(register):\n    register('exit_data', D)\n",
    }.items():
        text = BASE
        if name == "constructor exits":
            text = text.replace("loss: bce,", "loss: exit_loss,")
        elif name == "dataset check exits":
            text = text.replace("name: ring8", "name: exit_data")
        add("plugins", name, text, plugin=source)
    add("plugins", "path as module", BASE + "plugins: ['../evil.py']\n")
    # parts that cannot take each other: refused by run's dry build, before any write
    for name, value in {
        "GroupSort 3 on 16 units": "{loss: hinge, constraint: {name: orthogonal, group_size: 3}}",
        "GroupSort 32 on 16 units": "{loss: hinge, constraint: {name: orthogonal, group_size: 32}}",
    }.items():
        add("dry build (run only)", name, strategy(value), run_only=True)
    add(
        "dry build (run only)",
        "wrap_critic exits",
        BASE.replace(GP, "{loss: hinge, constraint: exit_wrap}"),
        run_only=True,
        plugin="import sys, harness\n"
        "from harness.parts import Constraint\nclass C(Constraint):\n"
        "    def wrap_critic(self, critic):\n        sys.exit(7)\n"
        "@harness.hookimpl\ndef register_constraints(register):\n"
        "    register('exit_wrap', C)\n",
    )
    add("plugins", "missing module", BASE + "plugins: [no_such_plugin_module]\n")
    return out


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang


def check(case: Case, folder: Path, index: int) -> tuple[bool, str]:
    """Run ``validate`` and ``run`` on the case; (clean, the error line or the problem)."""
    from typer.testing import CliRunner

    from harness.cli import app

    folder.mkdir()
    if case.setup is not None:
        path = case.setup(folder)
    else:
        path = folder / "suite.yaml"
        text = case.text.encode() if isinstance(case.text, str) else case.text
        path.write_bytes(text)
    text = case.text if isinstance(case.text, str) else ""
    if case.plugin is not None:
        module = f"hostile_plugin_{index}"
        (folder / f"{module}.py").write_text(case.plugin)
        sys.path.insert(0, str(folder))
        extra = f"plugins: [{module}]\n"
        path.write_text(text + extra)
    args = tuple(str(folder / "empty") if a == "EMPTY" else a for a in case.args)
    (folder / "empty").mkdir()
    before = sorted(p.name for p in folder.iterdir())
    store = folder / "store"
    lines = []
    commands = [["validate"], ["run", "--tracking-uri", f"sqlite:///{store}/m.db"]]
    for command in commands[1:] if case.run_only else commands:
        signal.alarm(20)
        try:
            result = CliRunner().invoke(app, [*command, str(path), *args])
        except Hang:
            return False, f"{command[0]}: hung"
        finally:
            signal.alarm(0)
        err = result.stderr
        problem = None
        if result.exit_code != 2:
            problem = f"exit {result.exit_code}"
        elif len(err.strip().splitlines()) != 1:
            problem = f"{len(err.strip().splitlines())} lines"
        elif (
            "Traceback" in result.output
            or result.exception not in (None,)
            and not isinstance(result.exception, SystemExit)
        ):
            problem = "traceback"
        elif CONTROL.search(err.rstrip("\n")):
            problem = "control characters"
        elif store.exists() or sorted(p.name for p in folder.iterdir()) != before:
            problem = "wrote files"
        if problem:
            return False, f"{command[0]}: {problem}: {result.output.strip()[:300]!r}"
        lines.append(err.strip())
    return True, lines[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", "-v", action="store_true", help="print every case's line")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGALRM, _alarm)
    all_cases = cases()
    names = [(c.kind, c.name) for c in all_cases]
    assert len(set(names)) == len(names), "case names must be distinct"
    table: dict[str, list[int]] = {}
    failures = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        for i, case in enumerate(all_cases):
            clean, line = check(case, Path(tmp) / f"case{i}", i)
            tried_clean = table.setdefault(case.kind, [0, 0])
            tried_clean[0] += 1
            tried_clean[1] += clean
            if not clean:
                failures.append(f"{case.kind} / {case.name}: {line}")
            elif args.verbose:
                print(f"{case.kind} / {case.name}: {line}")
    seconds = time.perf_counter() - start
    print("\n| class | tried | clean |\n|---|---:|---:|")
    for kind, (tried, clean) in table.items():
        print(f"| {kind} | {tried} | {clean} |")
    tried = sum(t for t, _ in table.values())
    clean = sum(c for _, c in table.values())
    print(f"| **all** | **{tried}** | **{clean} ({100 * clean / tried:.0f} %)** |")
    print(f"\n{tried} cases, validate and run each, in {seconds:.0f} s")
    for failure in failures:
        print(f"NOT CLEAN {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
