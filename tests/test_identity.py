"""Run identity sees code: editing a plugin module makes only its runs new, the CLI says why,
--rerun retrains on purpose, and tables keep to runs of the current code."""

import importlib
import sys

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from harness.analysis.currency import is_current
from harness.cli import app
from harness.core.identity import part_identity, source_hash
from harness.registry import Registry
from harness.run.loading import load_suite

PLUGIN = '''
import torch
import harness
from harness.parts import Constraint


class SoftClip(Constraint):
    """Clip critic weights to [-c, c] after each step."""

    def __init__(self, c: float = 0.05):
        self.c = c

    @torch.no_grad()
    def after_critic_step(self, critic):
        for p in critic.parameters():
            p.clamp_(-self.c, self.c)  # FORMULA


@harness.hookimpl
def register_constraints(register):
    register("softclip", SoftClip)
'''

SUITE = """
name: ident
dataset: {name: ring8, n: 1000}
architecture: {name: mlp, width: 8, depth: 2, z_dim: 2}
train: {steps: 2, batch_size: 16, n_critic: 1, log_every: 1}
strategies:
  gp: {loss: wasserstein, constraint: gradient_penalty}
  soft: {loss: wasserstein, constraint: softclip}
seeds: [0, 1]
eval: {every: 2, samples: 100}
metrics: [mode_coverage]
plugins: [ident_softclip]
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A suite-local plugin module in tmp_path; ``edit()`` changes its formula, as a new
    process would see it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "ident_softclip.py"
    path.write_text(PLUGIN)

    def edit():
        path.write_text(
            PLUGIN.replace("p.clamp_(-self.c, self.c)", "p.clamp_(-self.c / 2, self.c)")
        )
        sys.modules.pop("ident_softclip", None)
        importlib.invalidate_caches()

    yield edit
    sys.modules.pop("ident_softclip", None)


@pytest.fixture
def suite(write_suite):
    return write_suite(SUITE)


def harness(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def keys(suite):
    loaded, _ = load_suite(suite)
    return {(r.strategy, r.seed): r.run_key for r in loaded.runs}


def test_part_identity_names_dist_version_module_and_hash():
    info = Registry().get("constraint", "weight_clip")
    identity = info.identity
    assert identity.dist == "harness" and identity.module == "harness.builtins.constraints"
    assert identity.version == __import__("harness").__version__
    with open(sys.modules["harness.builtins.constraints"].__file__, "rb") as file:
        import hashlib

        assert identity.sha256 == hashlib.sha256(file.read()).hexdigest()
    assert str(identity).startswith("harness==")


def test_a_local_module_is_local(plugin, suite):
    _, registry = load_suite(suite)
    identity = registry.get("constraint", "softclip").identity
    assert (identity.dist, identity.version, identity.module) == ("local", "-", "ident_softclip")
    assert identity.sha256 == source_hash(registry.get("constraint", "softclip").cls)
    assert part_identity(int).sha256 == "unknown"  # no source: still an identity


def test_editing_a_plugin_changes_only_its_runs_keys(plugin, suite):
    before = keys(suite)
    plugin()
    after = keys(suite)
    assert {k for k in before if before[k] != after[k]} == {("soft", 0), ("soft", 1)}


def test_run_says_why_retrains_only_edited_runs_and_reruns_on_purpose(plugin, suite, tmp_path):
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    first = harness("run", suite, "--tracking-uri", uri)
    assert first.exit_code == 0, first.output
    assert "training 4 of 4 runs: new strategy (4)" in first.output

    again = harness("run", suite, "--tracking-uri", uri)
    assert "all 4 runs finished: skipped" in again.output

    plugin()
    stale = harness("table", suite, "--tracking-uri", uri, "--metrics", "modes_covered")
    assert stale.exit_code == 0, stale.output
    assert "| gp | 2 |" in stale.output and "soft" not in stale.output.split("\n\n")[0]
    assert "2 runs of older code hidden" in stale.output

    edited = harness("run", suite, "--tracking-uri", uri)
    assert edited.exit_code == 0, edited.output
    line = "training 2 of 4 runs: constraint softclip changed (2); 2 finished, skipped"
    assert line in edited.output

    table = harness("table", suite, "--tracking-uri", uri, "--metrics", "modes_covered")
    assert "| gp | 2 |" in table.output and "| soft | 2 |" in table.output
    assert "2 runs of older code hidden (--all-versions includes them)" in table.output
    every = harness(
        "table", suite, "--tracking-uri", uri, "--metrics", "modes_covered", "--all-versions"
    )
    assert "| soft | 2 |" in every.output and "older code" not in every.output

    rerun = harness("run", suite, "--tracking-uri", uri, "--rerun", "gp")
    assert rerun.exit_code == 0, rerun.output
    assert "training 2 of 4 runs: --rerun (2); 2 finished, skipped" in rerun.output
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ident")
    runs = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'run'")
    gp = [r for r in runs if r.data.tags["strategy"] == "gp"]
    assert len(gp) == 4 and len({r.data.tags["run_key"] for r in gp}) == 2  # old ones stay
    newest = {r.info.run_id for r in gp if "superseded_by" not in r.data.tags}
    assert len(newest) == 2 and {r.data.tags.get("superseded_by") for r in gp} - {None} == newest
    assert all(
        r.data.params["identity.constraint.softclip"]
        for r in runs
        if "soft" in r.data.tags["strategy"]
    )

    seeds = harness("run", suite, "--tracking-uri", uri, "--seeds", "0,1,2")
    assert "training 2 of 6 runs: new seed (2); 4 finished, skipped" in seeds.output

    only = harness("run", suite, "--tracking-uri", uri, "--seeds", "0,1,2,3", "--only", "soft")
    assert only.exit_code == 0, only.output
    assert "training 1 of 4 runs: new seed (1); 3 finished, skipped" in only.output
    runs = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'run'")
    assert {r.data.tags["seed"] for r in runs if r.data.tags["strategy"] == "gp"} == {"0", "1", "2"}


@pytest.mark.parametrize("flag", ["--rerun", "--only"])
def test_an_unknown_strategy_to_rerun_or_train_is_one_line_exit_2(plugin, suite, tmp_path, flag):
    store = tmp_path / "store"
    result = harness("run", suite, "--tracking-uri", f"sqlite:///{store / 'm.db'}", flag, "sof")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "did you mean 'soft'" in lines[0]
    assert not store.exists()


def test_is_current_needs_matching_identity_and_version():
    registry = Registry()
    identity = str(registry.get("constraint", "weight_clip").identity)
    version = __import__("harness").__version__
    good = {"identity.constraint.weight_clip": identity, "harness_version": version}
    assert is_current(good, registry)
    assert not is_current({**good, "identity.constraint.weight_clip": "x"}, registry)
    assert not is_current({**good, "harness_version": "0.0.0-old"}, registry)
    assert not is_current({"harness_version": version}, registry)  # logged without identity
    assert is_current({**good, "identity.constraint.gone": "x"}, registry)  # cannot tell


PACKAGE_SUITE = """
name: ident_pkg
dataset: {name: ring8, n: 1000}
architecture: {name: mlp, width: 8, depth: 2, z_dim: 2}
train: {steps: 2, batch_size: 16, n_critic: 1, log_every: 1}
strategies:
  gp: {loss: wasserstein, constraint: gradient_penalty}
  pkg: {loss: wasserstein, constraint: pkgclip}
seeds: [0, 1]
metrics: [mode_coverage]
"""


def test_an_installed_package_edit_or_version_bump_changes_only_its_runs(
    tmp_path, monkeypatch, write_suite
):
    """A throwaway installed distribution (module + dist-info with an entry point)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "thirdparty_pkgclip.py"
    module.write_text(PLUGIN.replace("softclip", "pkgclip"))
    info = tmp_path / "harness_pkgclip-0.1.dist-info"
    info.mkdir()
    metadata = "Metadata-Version: 2.1\nName: harness-pkgclip\nVersion: {}\n"
    (info / "METADATA").write_text(metadata.format("0.1"))
    (info / "entry_points.txt").write_text("[harness]\nmain = thirdparty_pkgclip\n")
    importlib.invalidate_caches()
    suite = write_suite(PACKAGE_SUITE)
    try:
        identity = Registry().get("constraint", "pkgclip").identity
        assert (identity.dist, identity.version) == ("harness-pkgclip", "0.1")
        first = keys(suite)
        module.write_text(
            PLUGIN.replace("softclip", "pkgclip").replace("(-self.c,", "(-2 * self.c,")
        )
        sys.modules.pop("thirdparty_pkgclip", None)
        edited = keys(suite)
        (info / "METADATA").write_text(metadata.format("0.2"))
        bumped = keys(suite)
    finally:
        sys.modules.pop("thirdparty_pkgclip", None)
    for before, after in [(first, edited), (edited, bumped)]:
        assert {k for k in before if before[k] != after[k]} == {("pkg", 0), ("pkg", 1)}


def test_a_table_of_only_older_runs_says_so_in_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("old")
    tags = {"harness.kind": "run", "strategy": "a", "seed": "0", "status": "finished"}
    run = client.create_run(experiment, tags=tags | {"run_key": "k"}).info.run_id
    client.log_param(run, "harness_version", __import__("harness").__version__)
    client.log_metric(run, "modes_covered", 3.0)
    result = harness("table", "--experiment", "old", "--tracking-uri", uri)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "only runs of older code" in lines[0] and "--all-versions" in lines[0]
    )
    every = harness("table", "--experiment", "old", "--tracking-uri", uri, "--all-versions")
    assert every.exit_code == 0 and "| a | 1 | 0 |" in every.output


def test_code_a_part_imports_lazily_is_part_of_its_identity():
    import hashlib
    from pathlib import Path

    from harness.builtins.architectures import MLP
    from harness.builtins.constraints import GradientPenalty
    from harness.core.identity import source_hash

    plugins = Path(__file__).parents[1] / "harness" / "builtins"
    own = hashlib.sha256((plugins / "architectures.py").read_bytes()).hexdigest()
    nets = (plugins / "architecture_nets.py").read_bytes()
    assert MLP.code_modules == ("harness.builtins.architecture_nets",)
    assert source_hash(MLP) == hashlib.sha256(own.encode() + nets).hexdigest()
    plain = hashlib.sha256((plugins / "constraints.py").read_bytes()).hexdigest()
    assert source_hash(GradientPenalty) == plain  # no code_modules: the file's hash alone


def test_every_builtin_part_names_the_builtin_modules_it_imports_lazily():
    """A network module a part imports inside ``build`` is code its runs depend on: editing it
    must re-key them, so the part names it in ``code_modules``."""
    import ast
    import inspect

    from harness.core.registry import Registry

    checked = 0
    for kind, parts in Registry().parts.items():
        for name, info in parts.items():
            cls = info.cls
            if not cls.__module__.startswith("harness.builtins"):
                continue
            checked += 1
            lazy = {
                node.module
                for fn in ast.walk(ast.parse(inspect.getsource(cls)))
                if isinstance(fn, ast.FunctionDef)
                for node in ast.walk(fn)
                if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("harness.builtins")
            }
            missing = lazy - set(getattr(cls, "code_modules", ()))
            assert not missing, f"{kind} {name}: code_modules lacks {sorted(missing)}"
    assert checked > 20  # every built-in part was looked at
