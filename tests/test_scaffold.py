"""`harness new-plugin`: refusals, a working part of every kind, and a scaffolded constraint
installed through its entry point, listed, run and tested in its own right."""

import importlib
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from plugin_site import harness, install, pytest_run
from typer.testing import CliRunner

from harness import scaffold, testing
from harness.cli import app
from harness.registry import Registry
from harness.run.loading import load_suite

runner = CliRunner()


def test_bad_input_is_refused_in_one_line(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    for args, message in [
        (["metric", "x"], "KIND: unknown kind 'metric'; choose one of constraint, loss, "),
        (["loss", "Half-Clip"], "NAME: 'Half-Clip' is not a lowercase Python identifier"),
        (["loss", "half__clip"], "NAME: 'half__clip' is not a lowercase Python identifier"),
        (["constraint", "weight_clip"], "NAME: constraint 'weight_clip' already exists (from "),
        (["constraint", "fresh", "--dir", str(taken)], f"{taken} already exists: not overwriting"),
    ]:
        result = runner.invoke(app, ["new-plugin", *args])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"error: {message}"), result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not any(taken.iterdir())


@pytest.mark.parametrize("kind", scaffold.KINDS)
def test_every_kind_is_a_working_part_with_a_valid_suite(kind, tmp_path, monkeypatch):
    name = f"my_{kind}"
    files = scaffold.create(kind, name, tmp_path / "pkg")
    assert [f.relative_to(tmp_path / "pkg").as_posix() for f in files] == [
        "pyproject.toml",
        f"harness_{name}/__init__.py",
        f"tests/test_{name}.py",
        "suite.yaml",
    ]
    assert f'{name} = "harness_{name}"' in files[0].read_text()
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    try:
        registry = Registry([f"harness_{name}"])
        part = registry.get(kind, name).cls
        getattr(testing, f"check_{kind}")(part, **({"n": 500} if kind == "dataset" else {}))
        suite, _ = load_suite(files[-1], profile="smoke", registry=registry)
    finally:
        sys.modules.pop(f"harness_{name}", None)
        importlib.invalidate_caches()
    assert len(suite.runs) == 1 and name in suite.runs[0].model_dump_json()


def test_scaffolded_constraint_installs_lists_runs_and_tests(tmp_path, tracking_store):
    package, site = tmp_path / "harness-my-idea", tmp_path / "site"
    created = runner.invoke(app, ["new-plugin", "constraint", "my_idea", "--dir", str(package)])
    assert created.exit_code == 0 and f"-e {package}\n" in created.stdout
    install(site, package)
    with ThreadPoolExecutor() as pool:  # the package's own tests run beside the CLI
        tested = pool.submit(pytest_run, site, tmp_path, str(package / "tests"))
        (listed, listing), (ran, run_output) = harness(
            site,
            tmp_path,
            "list --kind constraint",
            f"run {package / 'suite.yaml'} -p smoke --tracking-uri {tracking_store}",
        )
    assert listed == 0 and re.search(r"│ my_idea +│ weight=10.0 +│ harness-my-idea +│", listing)
    assert ran == 0 and re.search(r"│ wgan-my_idea +│ +1 │ +0 │", run_output), run_output
    assert int(re.search(r"(\d+) passed", tested.result())[1]) >= 2, tested.result()


def test_scaffold_outside_the_checkout_and_its_printed_steps_work_from_there(
    tmp_path, tracking_store
):
    """A user in some other directory, with the harness environment's interpreter (here a
    throwaway environment that sees the project's packages, so the install stays in it):
    every printed command, run as printed from that directory, works through to the
    generated package's own tests passing and its suite running."""
    import os
    import shlex
    import subprocess
    import sysconfig

    env_dir, work = tmp_path / "env", tmp_path / "elsewhere"
    work.mkdir()
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site_dir = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    project_site = sysconfig.get_paths()["purelib"]
    pth = f"import site; site.addsitedir({project_site!r})\n"  # harness, torch, pytest
    (Path(site_dir) / "_project.pth").write_text(pth)
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    environ |= {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": tracking_store}

    def shell(*words: str) -> str:
        done = subprocess.run(words, cwd=work, env=environ, capture_output=True, text=True)
        assert done.returncode == 0, f"{shlex.join(words)}\n{done.stdout}{done.stderr}"
        return done.stdout

    out = shell(str(python), "-m", "harness.cli", "new-plugin", "constraint", "my_idea")
    steps = out.split("then:\n", 1)[1].splitlines()
    assert len(steps) == 3 and not any("uv run" in step for step in steps), out
    _, tested, ran = (shell(*shlex.split(step)) for step in steps)
    assert re.search(r"(\d+) passed", tested) and "failed" not in tested, tested
    assert re.search(r"│ wgan-my_idea +│ +1 │ +0 │", ran), ran
