"""The paths users and plugin authors import keep working whatever moves inside the package:
the names of ``harness``, ``harness.parts``, ``harness.testing`` and ``harness.registry``, the
modules run with ``python -m``, the console script, and every import shown in the README and
docs/."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_package_root():
    import harness

    assert callable(harness.hookimpl) and callable(harness.train) and callable(harness.score)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", harness.__version__)
    assert set(harness.__all__) == {"__version__", "hookimpl", "score", "train"}


def test_parts_testing_and_registry():
    import harness.parts
    import harness.testing
    from harness.core import parts
    from harness.registry import Registry

    for name in harness.parts.__all__:
        assert getattr(harness.parts, name) is getattr(parts, name), name
    for kind in ("loss", "constraint", "architecture", "dataset", "metric"):
        assert issubclass(harness.parts.KINDS[kind], object)
    for check in ("check_constraint", "check_loss", "check_architecture", "check_dataset"):
        assert callable(getattr(harness.testing, check))
    assert "gradient_penalty" in Registry().parts["constraint"]


@pytest.mark.parametrize(
    "argv",
    [["-m", "harness.evaluator_training", "--help"], ["-m", "harness.cli", "--help"]],
)
def test_modules_run_with_python_m(argv):
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()


def test_the_console_script():
    script = Path(sys.executable).with_name("harness")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout and "table" in done.stdout


def shown_imports() -> list[str]:
    """Every ``import harness…``/``from harness… import …`` line in the docs' code blocks."""
    lines = []
    for doc in DOCS:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S):
            lines += [
                line.strip()
                for line in block.splitlines()
                if re.match(r"\s*(from harness(\.\w+)* import |import harness\b)", line)
            ]
    return sorted(set(lines))


def test_every_import_shown_in_the_docs_works():
    shown = shown_imports()
    assert "from harness.parts import Constraint" in shown and "import harness" in shown
    for line in shown:
        exec(compile(line, "<docs>", "exec"), {})
