"""Listing and validating never import the heavy libraries (torch, mlflow, POT, scikit-learn):
they cost seconds of start-up. This checks the property itself, not a timing; the timing is
``benchmarks/cli_startup.py``."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "mlflow", "ot", "sklearn", "pandas")


def imported_by(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    report = f"import json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    probe = f"{code}\n{report}"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_plugin_and_core_modules_import_without_heavy_libraries():
    modules = [
        "harness.cli",
        "harness.parts",
        "harness.registry",
        "harness.run.loading",
        "harness.core.hookspecs",
        "harness.scaffold",
        *(f"harness.core.{p.stem}" for p in (ROOT / "harness" / "core").glob("*.py")),
        *(f"harness.builtins.{p.stem}" for p in (ROOT / "harness" / "builtins").glob("*.py")),
    ]
    # the torch halves of plugins, imported by build()/wrap_critic(), are the exception
    modules = [m for m in modules if not m.endswith(("_nets", "_layers"))]
    assert imported_by("\n".join(f"import {m}" for m in modules)) == []


def test_list_and_validate_commands_import_no_heavy_library():
    run_cli = (
        "from harness.cli import app\n"
        "for argv in ({argv}):\n"
        "    try:\n        app(list(argv))\n"
        "    except SystemExit as exc:\n        assert not exc.code, exc.code\n"
    )
    argvs = (["--help"], ["list"], ["list", "--full"], ["validate", "suites/mnist_modes.yaml"])
    assert imported_by(run_cli.format(argv=", ".join(map(repr, argvs)))) == []


def test_exit_skips_the_last_collection_unless_triton_would_call_it_a_leak():
    """A command leaves what is alive at exit to the OS (the interpreter's last garbage
    collection over torch's and MLflow's objects costs 0.7 s), except once triton is loaded:
    its bindings print every object left unfreed as a leak, which a user must not see."""
    probe = (
        "import gc, sys, torch\nimport harness.cli\n{before}\n"
        "harness.cli.leave_objects_to_the_os()\n"
        "print(gc.get_freeze_count() > 0, 'triton' in sys.modules)"
    )
    optimiser = "torch.optim.Adam([torch.zeros(1, requires_grad=True)])"  # imports triton
    for before in ("", optimiser):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(before=before)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        frozen, triton = done.stdout.split()
        assert frozen == str(triton == "False")
        assert "leak" not in done.stderr, done.stderr
