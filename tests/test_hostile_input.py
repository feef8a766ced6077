"""Hostile suite files: every one gives a one-line SuiteError, never another exception."""

import yaml
from conftest import TOY_SUITE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from harness.cli import app
from harness.core.errors import SuiteError
from harness.run.loading import load_suite

BASE = yaml.safe_load(TOY_SUITE)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
PATHS = [
    ("name",),
    ("dataset",),
    ("dataset", "n"),
    ("architecture",),
    ("architecture", "width"),
    ("architecture", "z_dim"),
    ("train",),
    ("train", "steps"),
    ("train", "batch_size"),
    ("strategies",),
    ("strategies", "wgan-gp"),
    ("strategies", "wgan-gp", "constraint"),
    ("strategies", "bce", "optimizer"),
    ("seeds",),
    ("eval",),
    ("eval", "samples"),
    ("metrics",),
    ("plugins",),
    ("profiles",),
    ("extra_key",),
]


def mutate(path, value, delete):
    suite = yaml.safe_load(TOY_SUITE)
    node = suite
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return suite


def assert_one_line_error(path):
    try:
        load_suite(path)
    except SuiteError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(PATHS), value=values, delete=st.booleans())
def test_random_values_anywhere_give_one_line_errors(tmp_path, path, value, delete):
    file = tmp_path / "suite.yaml"
    file.write_text(yaml.safe_dump(mutate(path, value, delete), allow_unicode=True))
    assert_one_line_error(file)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_random_text_gives_one_line_errors(tmp_path, text):
    file = tmp_path / "suite.yaml"
    file.write_text(text, encoding="utf-8")
    assert_one_line_error(file)


HOSTILE = {
    "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    ),
    "python tag": "name: !!python/object/apply:os.system ['echo pwned']\n",
    "python name": "name: !!python/name:os.system\n",
    "deep nesting": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "huge steps": TOY_SUITE.replace("steps: 6", "steps: 1e400"),
    "huge int steps": TOY_SUITE.replace("steps: 6", "steps: " + "9" * 50),
    "negative steps": TOY_SUITE.replace("steps: 6", "steps: -1"),
    "infinite lr": TOY_SUITE.replace(
        "bce: {loss: bce, constraint: none}", "bce: {loss: bce, optimizer: {name: adam, lr: .inf}}"
    ),
    "unicode name": TOY_SUITE.replace("name: tiny", "name: 'тест ✓'"),
    "path plugin": TOY_SUITE + "plugins: ['../evil.py']\n",
    "seed too big": TOY_SUITE.replace("seeds: [0, 1]", "seeds: [99999999999999999999]"),
    "two documents": TOY_SUITE + "---\nname: other\n",
    "binary": "\x00\x01\x02",
}


def test_hostile_suites_through_the_cli(tmp_path):
    runner = CliRunner()
    for case, text in HOSTILE.items():
        file = tmp_path / "suite.yaml"
        file.write_text(text, encoding="utf-8")
        store = tmp_path / "store"
        result = runner.invoke(app, ["run", str(file), "--tracking-uri", f"sqlite:///{store}/m.db"])
        assert result.exit_code == 2, (case, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)
        assert "Traceback" not in result.output, case
        assert not store.exists(), case


def test_validate_names_the_code_a_suite_imports(tmp_path, monkeypatch):
    (tmp_path / "my_local_plugin.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    file = tmp_path / "suite.yaml"
    file.write_text(TOY_SUITE + "plugins: [my_local_plugin]\n")
    result = CliRunner().invoke(app, ["validate", str(file)])
    assert result.exit_code == 0
    assert (
        "imports: my_local_plugin" in result.stdout
        and str(tmp_path / "my_local_plugin.py") in result.stdout
    )
