"""The house's floors (docs/architecture.md), checked on the import graph: every import counts,
inside functions and under TYPE_CHECKING too. Imports point down only (import-linter's layers
contract in pyproject.toml), no module takes part in an import circle, nothing inside a layer
imports the package root, and only the store speaks to MLflow."""

import logging
import re
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "evaluation", "builtins", "run", "analysis")  # bottom to top
TOP = {"cli", "console", "testing", "scaffold", "data_fetch", "evaluator_training", "parts"}
TOP |= {"registry"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("harness", include_external_packages=True, cache_dir=None)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_import_linter_contracts_are_kept(capsys):
    known = logging.Logger.manager.loggerDict.values()
    loggers = [log for log in known if isinstance(log, logging.Logger) and not log.disabled]
    try:  # import-linter's dictConfig disables every other logger of this test process
        code = lint_imports(
            config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True
        )
    finally:
        for log in loggers:
            log.disabled = False
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Layers: imports point down only KEPT" in out
    assert "3 kept, 0 broken" in out


def test_no_import_circles(graph):
    own = {m for m in graph.modules if m.split(".")[0] == "harness"}
    edges = {m: set(graph.find_modules_directly_imported_by(m)) & own for m in own}
    assert circles(edges) == []
    planted = {**edges, "harness.core.parts": edges["harness.core.parts"] | {"harness.run.trainer"}}
    assert circles(planted), "the check finds a circle once one is planted"


def test_every_module_sits_in_a_layer_or_at_the_top(graph):
    own = [m for m in graph.modules if m.startswith("harness.")]
    for module in own:
        head = module.split(".")[1]
        assert head in LAYERS or head in TOP, f"{module}: in no layer (docs/architecture.md)"
    layers = {p.name for p in (ROOT / "harness").iterdir() if (p / "__init__.py").exists()}
    assert layers == set(LAYERS)


def test_nothing_inside_a_layer_imports_the_package_root(graph):
    importers = graph.find_modules_that_directly_import("harness")
    assert not {m for m in importers if m.split(".")[1] in LAYERS}


def test_only_the_store_speaks_to_mlflow(graph):
    assert graph.find_modules_that_directly_import("mlflow") == {"harness.run.store"}
    spelled = []
    for path in (ROOT / "harness").rglob("*.py"):
        if path.name != "store.py" and re.search(
            r"MlflowClient|\"harness\.kind\"", path.read_text()
        ):
            spelled.append(path.relative_to(ROOT))
    assert spelled == [], "MLflow's client and tag names belong to harness/run/store.py"
