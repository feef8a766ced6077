import importlib
import sys
import textwrap

import pytest

from harness.core.errors import PluginError, SuiteError
from harness.registry import Registry

PLUGIN = '''
import harness
from harness.parts import Constraint


class Halve(Constraint):
    """Halve the critic weights after each step."""

    def __init__(self, factor: float = 0.5, layers: int = 1):
        self.factor = factor


@harness.hookimpl
def register_constraints(register):
    register("{name}", Halve)
'''


def install_distribution(path, dist: str, module: str, part_name: str, entry: str = "main"):
    """A throwaway installed distribution: a module plus a dist-info with an entry point."""
    (path / f"{module}.py").write_text(PLUGIN.format(name=part_name))
    info = path / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[harness]\n{entry} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    importlib.invalidate_caches()
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[name]


def test_builtins_come_through_the_entry_point_group():
    parts = Registry().parts
    assert {"bce", "bce_minimax", "wasserstein", "hinge"} <= set(parts["loss"])
    assert {"none", "weight_clip", "gradient_penalty", "spectral_norm"} <= set(parts["constraint"])
    assert {"mlp", "dcgan28"} <= set(parts["architecture"])
    assert {"ring8", "grid25", "mnist"} <= set(parts["dataset"])
    assert parts["constraint"]["weight_clip"].source == "harness"


def test_third_party_distribution_is_discovered(site):
    install_distribution(site, "harness-halve", "thirdparty_halve", "halve")
    importlib.invalidate_caches()
    info = Registry().get("constraint", "halve")
    assert info.source == "harness-halve"
    assert [(p.name, p.default) for p in info.params] == [("factor", 0.5), ("layers", 1)]


def test_duplicate_names_name_both_sources(site):
    install_distribution(site, "harness-clash", "thirdparty_clash", "weight_clip")
    importlib.invalidate_caches()
    with pytest.raises(PluginError) as exc:
        Registry().parts  # noqa: B018
    message = str(exc.value)
    assert "weight_clip" in message and "harness-clash" in message and "by harness " in message


def test_suite_local_module(site):
    (site / "thirdparty_local.py").write_text(PLUGIN.format(name="halve_local"))
    registry = Registry(["thirdparty_local"])
    assert registry.get("constraint", "halve_local").source == "thirdparty_local"


def test_unimportable_module():
    with pytest.raises(PluginError, match="no_such_module_xyz"):
        Registry(["no_such_module_xyz"])


def test_register_rejects_non_parts(site):
    (site / "thirdparty_bad.py").write_text(
        textwrap.dedent(
            """
            import harness

            @harness.hookimpl
            def register_losses(register):
                register("oops", object)
            """
        )
    )
    with pytest.raises(PluginError, match="thirdparty_bad registered loss 'oops'.*not a subclass"):
        Registry(["thirdparty_bad"]).parts  # noqa: B018


def test_unknown_name_suggests_a_close_match():
    with pytest.raises(SuiteError, match="did you mean 'gradient_penalty'"):
        Registry().get("constraint", "gradient_penalti")


def test_parameters_are_checked_by_name_and_type():
    registry = Registry()
    assert registry.create("constraint", "weight_clip", {"c": "0.02"}).c == 0.02
    with pytest.raises(SuiteError, match="no parameter 'cc'.*did you mean 'c'"):
        registry.create("constraint", "weight_clip", {"cc": 0.1})
    with pytest.raises(SuiteError, match="valid number"):
        registry.create("constraint", "weight_clip", {"c": "big"})
    with pytest.raises(SuiteError, match="'embedded' or 'torchvision'"):
        registry.create("dataset", "mnist", {"source": "internet"})
