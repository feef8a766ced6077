"""Plugin packages installed the way a researcher installs them — built, with their entry
points — into a throwaway directory instead of the project environment, and the harness CLI
and pytest run on them in fresh processes that see that directory."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = """
import contextlib, io, json, shlex, sys
from harness.cli import app

results = []
for line in sys.argv[1:]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = app(shlex.split(line), prog_name="harness", standalone_mode=False)
    results.append([code or 0, out.getvalue()])
print(json.dumps(results))
"""


def install(site: Path, *packages: Path) -> None:
    """Build and install package directories into ``site`` (no dependencies)."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.skip("installing plugin packages needs uv")
    args = ["pip", "install", "--quiet", "--no-deps", "--python", sys.executable]
    done = subprocess.run(
        [uv, *args, "--target", str(site), *map(str, packages)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def _env(site: Path, env: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    # Tiny models: one thread each, so a busy machine's cores are not oversubscribed.
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **env}


def harness(site: Path, cwd: Path, *commands: str, **env: str) -> list[tuple[int, str]]:
    """Run ``harness`` command lines in order in one process (one start-up instead of one per
    command); returns each one's exit code and output."""
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *commands],
        cwd=cwd,
        env=_env(site, env),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [tuple(r) for r in json.loads(done.stdout.splitlines()[-1])]


def pytest_run(site: Path, cwd: Path, *args: str) -> str:
    """Run pytest in a fresh process; asserts that it passes and returns its output."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=_env(site, {}),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
