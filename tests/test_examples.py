"""docs/writing-plugins.md, executed: its files are examples/harness-maxnorm verbatim, and its
commands — install, list, test, run, table, scaffold — run on a copy of that package, installed
through its entry point, with their outputs matching the ones the page shows."""

import re
import shlex
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from plugin_site import harness, install, pytest_run

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "writing-plugins.md"
EXAMPLE = "examples/harness-maxnorm"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
LABEL = re.compile(r"`([^`]+)`:\s*$")


def blocks() -> list[tuple[str, str | None, str]]:
    """(language, file label or None, text) of every fenced block, in order."""
    text = DOC.read_text()
    out = []
    for match in FENCE.finditer(text):
        label = LABEL.search(text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1])
        out.append((match[1], label and label[1], match[2]))
    return out


def masked(text: str) -> list[str]:
    """Lines with numbers masked, bold marks dropped and whitespace collapsed."""
    text = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", text.replace("**", ""))
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def test_the_page_shows_the_example_package_verbatim():
    files = {label: text for _, label, text in blocks() if label}
    assert set(files) == {
        f"{EXAMPLE}/{name}"
        for name in (
            "harness_maxnorm/__init__.py",
            "harness_maxnorm/normalized.py",
            "pyproject.toml",
            "tests/test_maxnorm.py",
            "suite.yaml",
        )
    }
    for label, text in files.items():
        assert (ROOT / label).read_text() == text, f"{label} differs from its block in {DOC}"
    assert len(files[f"{EXAMPLE}/harness_maxnorm/__init__.py"].splitlines()) <= 30
    unlabelled = {lang for lang, label, _ in blocks() if not label}
    assert unlabelled == {"bash", "text"}, "every other block must be a file or a command"


def test_the_page_runs_end_to_end(tmp_path, tracking_store):
    shutil.copytree(
        ROOT / EXAMPLE, tmp_path / EXAMPLE, ignore=shutil.ignore_patterns("__pycache__")
    )
    installs, commands, tests, shown = [], [], [], []  # shown: (command indices, output)
    block_commands: list[int] = []
    for lang, _, text in blocks():
        if lang == "text":
            shown.append((block_commands, text))
        if lang != "bash":
            continue
        block_commands = []
        for line in text.splitlines():
            words = shlex.split(line, comments=True)
            if words[:4] == ["uv", "pip", "install", "-e"]:
                installs.append(tmp_path / words[4])
            elif words[:3] == ["uv", "run", "harness"]:
                block_commands.append(len(commands))
                commands.append(shlex.join(words[3:]))
            elif words[:3] == ["uv", "run", "pytest"]:
                tests.append(words[3:])
            else:
                raise AssertionError(f"{DOC} has a command this test cannot run: {line!r}")
    # Installs first; the harness commands in the page's order, in one process, while the
    # package's tests run beside them.
    site = tmp_path / "site"
    install(site, *installs)
    with ThreadPoolExecutor() as pool:
        tested = [pool.submit(pytest_run, site, tmp_path, *args) for args in tests]
        results = harness(site, tmp_path, *commands, MLFLOW_TRACKING_URI=tracking_store)
    for command, (code, output) in zip(commands, results, strict=True):
        assert code == 0, f"harness {command}\n{output}"
    assert tested and all(" passed" in t.result() for t in tested)

    for indices, text in shown:  # paths under the checkout as seen from it, as the page shows
        output = masked("\n".join(results[i][1] for i in indices).replace(f"{ROOT}/", ""))
        for line in masked(text):
            assert any(line in out for out in output), f"{line!r} not in:\n" + "\n".join(output)
    table = dict(zip(commands, (out for _, out in results), strict=True))[
        f"table {EXAMPLE}/suite.yaml"
    ]
    assert re.search(r"^\| wgan-maxnorm \| 2 \| 0 \|", table, re.M), table
    assert (tmp_path / "harness-my-idea" / "suite.yaml").is_file()
