import inspect
from pathlib import Path

from harness.core import hookspecs

README = Path(__file__).parents[1].joinpath("README.md").read_text()
HOOKS = [n for n in dir(hookspecs) if n.startswith("register_")]


def test_every_hookspec_is_documented_with_its_signature():
    assert len(HOOKS) == 5
    for name in HOOKS:
        spec = getattr(hookspecs, name)
        params = ", ".join(inspect.signature(spec).parameters)
        assert f"`{name}({params})`" in README, name
        doc = inspect.getdoc(spec)
        assert ":param register:" in doc and "Example::" in doc and "@harness.hookimpl" in doc


def test_readme_starts_with_the_two_commands():
    head = README[:600]
    assert "uv run harness run suites/mnist_modes.yaml" in head and "uv run pytest" in head


def test_every_builtin_part_is_in_the_readme_table():
    from harness.registry import Registry

    for kind, parts in Registry().parts.items():
        for name, info in parts.items():
            if info.source == "harness":
                assert f"| {kind} | `{name}` |" in README, (kind, name)
