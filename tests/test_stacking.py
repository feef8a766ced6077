"""Stacked members (issue 25): M runs trained as one model give each run what it gets alone,
keep their own random streams, optimisers, divergence and checkpoints, and the runner groups
only runs whose parts declare support."""

import math

import pytest
import torch
from conftest import TOY_SUITE
from mlflow.tracking import MlflowClient

from harness.builtins.constraints import Dragan, NoConstraint
from harness.core.errors import ContractError
from harness.core.registry import Registry
from harness.core.spec import OptimizerConfig
from harness.run import grouping, stacked_training
from harness.run.loading import load_suite
from harness.run.member_optimizers import (
    MemberOptimizer,
    StackedAdam,
    StackedRMSprop,
    member_optimizer,
)
from harness.run.members import MemberMixing, Members, Stacked
from harness.run.runner import Progress, RunSettings, run_suite
from harness.run.stacked_training import train_stacked
from harness.run.store import Store
from harness.run.trainer import MetricsSink, train
from harness.testing import check_constraint

TINY = """
name: stack
dataset: {name: DATA}
architecture: ARCH
train: {steps: 4, batch_size: 16, n_critic: 2, log_every: 2}
strategies:
  s: {loss: LOSS, constraint: CONSTRAINT}
seeds: [0, 1, 2]
eval: {every: 2, samples: 200}
metrics: [mode_coverage]
"""
MLP = "{name: mlp, width: 16, depth: 2, z_dim: 2}"


class Keep(MetricsSink):
    """Logged values and the last checkpoint; resumes from ``start`` when given."""

    def __init__(self, start: dict | None = None, stop_at: int | None = None):
        self.values, self.checkpoint, self.start, self.stop_at = {}, None, start, stop_at

    def log(self, values, step):
        if step == self.stop_at:
            raise KeyboardInterrupt
        for key, value in values.items():
            self.values.setdefault(key, []).append((step, value))

    def save_checkpoint(self, state):
        self.checkpoint = state

    def load_checkpoint(self):
        return self.start


def suite_runs(
    write_suite, arch=MLP, loss="wasserstein", constraint="gradient_penalty", data="ring8, n: 2000"
):
    text = TINY.replace("DATA", data).replace("ARCH", arch).replace("LOSS", loss)
    suite, registry = load_suite(write_suite(text.replace("CONSTRAINT", constraint)))
    return suite.runs, registry


def alone_and_stacked(specs, registry):
    alone = [Keep() for _ in specs]
    pairs = zip(specs, alone, strict=True)
    results = [train(s, registry=registry, device="cpu", sink=k) for s, k in pairs]
    stacked = [Keep() for _ in specs]
    stacked_results = train_stacked(specs, stacked, registry=registry, device="cpu")
    return (alone, results), (stacked, stacked_results)


def weights_gap(a: Keep, b: Keep, skip=()) -> float:
    gaps = [0.0]
    for net in ("generator", "critic"):
        for name, value in a.checkpoint[net].items():
            if not any(s in name for s in skip):
                gaps.append((value.double() - b.checkpoint[net][name].double()).abs().max().item())
    return max(gaps)


CONSTRAINTS = [  # (loss, constraint, whether a member is its run alone bit for bit)
    ("wasserstein", "gradient_penalty", True),
    ("wasserstein", "lipschitz_penalty", True),
    ("bce", "r1", False),
    ("wasserstein", "{name: weight_clip, c: 0.01}", True),
    ("bce", "none", False),
    ("wasserstein", "spectral_norm", False),
    ("wasserstein", "orthogonal", False),
]


@pytest.mark.parametrize("loss,constraint,exact", CONSTRAINTS)
def test_every_declared_constraint_trains_stacked_as_each_run_alone(
    write_suite, loss, constraint, exact
):
    specs, registry = suite_runs(write_suite, loss=loss, constraint=constraint)
    (alone, results), (stacked, stacked_results) = alone_and_stacked(specs, registry)
    for a, b, r in zip(alone, stacked, stacked_results, strict=True):
        assert r.status == "finished"
        # README, "Same runs, same keys": bit for bit, or to rounding
        assert weights_gap(a, b) == 0 if exact else weights_gap(a, b) < 1e-6
        for key in ("loss_critic", "loss_generator", "penalty", "modes_covered"):
            got, want = [v for _, v in b.values[key]], [v for _, v in a.values[key]]
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6), key


ARCHITECTURES = [
    # (architecture, data, tolerance on weights after 4 steps)
    ("{name: mlp, width: 16, depth: 2, z_dim: 2, pack: 2}", "ring8, n: 2000", 1e-6),
    ("{name: pacgan_toy, width: 8, depth: 2, gen_width: 8, gen_depth: 2}", "ring8, n: 2000", 1e-6),
    ("{name: dcgan28, width: 4, z_dim: 8}", "mnist", 1e-5),
    ("{name: dcgan28, width: 4, z_dim: 8, pack: 2}", "mnist", 1e-5),
]


@pytest.mark.parametrize("arch,data,tolerance", ARCHITECTURES)
def test_architectures_packing_and_maxout_train_stacked_as_alone(
    write_suite, arch, data, tolerance
):
    specs, registry = suite_runs(write_suite, arch=arch, data=data)
    (alone, _), (stacked, _) = alone_and_stacked(specs, registry)
    for a, b in zip(alone, stacked, strict=True):
        assert weights_gap(a, b) < tolerance


def test_batch_norm_keeps_per_member_statistics(write_suite):
    """PacGAN's DCGAN (batch norm in both networks): everything agrees but the biases just
    before a batch norm, whose true gradient is 0 (Adam scales their rounding noise up to the
    learning rate), and the running means that follow them."""
    specs, registry = suite_runs(
        write_suite, arch="{name: pacgan_dcgan, width: 4}", data="mnist", constraint="none"
    )
    (alone, _), (stacked, _) = alone_and_stacked(specs, registry)
    noisy = ["running_mean"]
    for net in ("generator", "critic"):
        for name in alone[0].checkpoint[net]:
            if name.endswith(".running_mean"):  # the bias of the layer before this norm
                *path, index, _ = name.split(".")
                noisy.append(".".join([*path, str(int(index) - 1), "bias"]))
    for a, b in zip(alone, stacked, strict=True):
        assert weights_gap(a, b, skip=noisy) < 1e-5
        assert weights_gap(a, b) < 5e-3  # the noisy ones: at most a few learning-rate steps
    stats = [s.checkpoint["critic"]["body.4.running_var"] for s in stacked]
    assert not torch.equal(stats[0], stats[1])  # each member its own statistics
    specs = [  # a member past its critic steps computes nothing, so its statistics stay
        s.model_copy(update={"train": s.train.model_copy(update={"n_critic": n})})
        for s, n in zip(specs, (1, 3, 2), strict=True)
    ]
    (alone, _), (stacked, _) = alone_and_stacked(specs, registry)
    for a, b in zip(alone, stacked, strict=True):
        for net in ("generator", "critic"):
            for name, value in a.checkpoint[net].items():
                if name.endswith("running_var"):
                    assert (value - b.checkpoint[net][name]).abs().max() < 1e-5, name


SETTINGS = [(1e-4, (0.0, 0.9), 1), (3e-3, (0.5, 0.999), 3), (1e-2, (0.9, 0.99), 2)]


def swept(specs, settings=SETTINGS):
    """``specs`` with each its own Adam learning rate, betas and critic steps."""
    return [
        s.model_copy(
            update={
                "optimizer": OptimizerConfig(name="adam", lr=lr, betas=betas),
                "train": s.train.model_copy(update={"n_critic": n}),
            }
        )
        for s, (lr, betas, n) in zip(specs, settings, strict=True)
    ]


@pytest.mark.parametrize(  # spectral norm's batched power iteration: to rounding
    "constraint,tolerance",
    [("gradient_penalty", 0), ("{name: weight_clip, c: 0.01}", 0), ("spectral_norm", 1e-6)],
)
def test_members_with_their_own_lr_betas_and_critic_steps_get_their_own_updates(
    write_suite, constraint, tolerance
):
    """A sweep over optimizer.lr, betas and n_critic stacks: each member's weights are exactly
    those of its own torch.optim run, whatever the constraint does between its critic steps
    (a projection, power-iteration buffers): a member past its critic steps is left alone."""
    specs, registry = suite_runs(write_suite, constraint=constraint)
    specs = swept(specs)
    assert len({grouping.group_key(s) for s in specs}) == 1
    (alone, _), (stacked, _) = alone_and_stacked(specs, registry)
    for a, b in zip(alone, stacked, strict=True):
        assert weights_gap(a, b) <= tolerance
        assert (
            a.checkpoint["opt_c"]["param_groups"][0]["lr"]
            == b.checkpoint["opt_c"]["param_groups"][0]["lr"]
        )
    if constraint != "gradient_penalty":
        return
    rms = [
        s.model_copy(update={"optimizer": OptimizerConfig(name="rmsprop", lr=lr)})
        for s, (lr, _, _) in zip(specs, SETTINGS, strict=True)
    ]
    (alone, _), (stacked, _) = alone_and_stacked(rms, registry)
    assert all(weights_gap(a, b) == 0 for a, b in zip(alone, stacked, strict=True))


OPTIMIZERS = [
    (lambda p, lr, betas: torch.optim.Adam(p, lr=lr, betas=betas), StackedAdam),
    (lambda p, lr, betas: torch.optim.RMSprop(p, lr=lr), StackedRMSprop),
    (lambda p, lr, betas: torch.optim.SGD(p, lr=lr), MemberOptimizer),
]


@pytest.mark.parametrize("make,kind", OPTIMIZERS)
def test_the_stacked_optimisers_are_torch_optim_bit_for_bit(make, kind):
    """Each member's own lr and betas, members skipping steps (a sweep's critic rounds), one
    frozen, gradients of all scales, a tensor without gradient: weights and the exported
    state (step counts included) are exactly those of each member's own optimiser."""
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(13, 7), torch.nn.Linear(7, 1)) for _ in range(4)]
    settings = [(1e-4, (0.0, 0.9)), (3e-3, (0.5, 0.999)), (1e-2, (0.9, 0.99)), (0.5, (0.5, 0.9))]
    own = [make(n.parameters(), lr, b) for n, (lr, b) in zip(nets, settings, strict=True)]
    stacked = Stacked(nets)
    optimizer = member_optimizer(stacked, own)
    assert type(optimizer) is kind
    for step in range(12):
        chosen = [m for m in range(4) if (step + m) % 3] if step % 2 else None
        if step == 6:
            optimizer.freeze(3)
        grads = [torch.randn_like(w) * 10.0 ** (step % 5 - 4) for w in stacked.weights]
        grads[-1] = None if step < 4 else grads[-1]  # the last bias: no gradient at first
        for w, g in zip(stacked.weights, grads, strict=True):
            w.grad = g
        optimizer.step(chosen)
        for m, (net, opt) in enumerate(zip(nets, own, strict=True)):
            if (chosen is None or m in chosen) and not (step >= 6 and m == 3):
                for p, g in zip(net.parameters(), grads, strict=True):
                    p.grad = None if g is None else g[m].clone()
                opt.step()
    for m, (net, opt) in enumerate(zip(nets, own, strict=True)):
        mine = stacked.member(m)
        for name, value in net.state_dict().items():
            assert torch.equal(mine[name], value), (m, name)
        copies = [torch.nn.Parameter(p.detach().clone()) for p in net.parameters()]
        exported = make(copies, 1.0, (0.5, 0.9))
        optimizer.export(m, exported)
        assert [
            {k: v.tolist() for k, v in exported.state[p].items()}
            for p in exported.param_groups[0]["params"]
        ] == [{k: v.tolist() for k, v in opt.state[p].items()} for p in net.parameters()]


def test_a_critic_round_computes_only_the_members_still_taking_critic_steps(write_suite):
    """Members with 1, 3 and 2 critic steps: the critic sees each member's rows in its own
    rounds only (real, fake and the penalty's interpolates: 3 batches a round), never a
    round's worth of rows for a member past its critic steps."""
    specs, registry = suite_runs(write_suite)
    members = stacked_training.load_members(
        swept(specs), [MetricsSink()] * 3, registry, torch.device("cpu"), None
    )
    group = stacked_training.Group(members)
    rows = []
    group.critic.register_forward_pre_hook(
        lambda _, args: rows.append(len(args[0])) if group.phase == "critic" else None
    )
    stacked_training.stacked_step(group, specs[0].train)
    batch = specs[0].train.batch_size
    assert rows == [3 * batch] * 3 + [2 * batch] * 3 + [1 * batch] * 3


def test_a_member_that_diverges_is_frozen_and_the_others_are_untouched(write_suite, monkeypatch):
    specs, registry = suite_runs(write_suite)
    load = stacked_training.load_member

    def poisoned(spec, *args):
        member = load(spec, *args)
        if spec.seed == 1:
            with torch.no_grad():
                next(member.parts.critic.parameters()).fill_(math.nan)
        return member

    alone = [Keep() for _ in specs]
    for spec, sink in zip(specs, alone, strict=True):
        train(spec, registry=registry, device="cpu", sink=sink)
    monkeypatch.setattr(stacked_training, "load_member", poisoned)
    stacked = [Keep() for _ in specs]
    results = train_stacked(specs, stacked, registry=registry, device="cpu")
    assert [r.status for r in results] == ["finished", "diverged", "finished"]
    assert results[1].diverged_step == 2 and set(stacked[1].values["diverged"]) == {(2, 1.0)}
    for m in (0, 2):
        assert weights_gap(alone[m], stacked[m]) == 0
        assert all(v.isfinite().all() for v in stacked[m].checkpoint["critic"].values())


def test_an_interrupted_stack_resumes_bit_for_bit(write_suite):
    text = TINY.replace("steps: 4", "steps: 8").replace("every: 2, samples", "every: 4, samples")
    text = (
        text.replace("DATA", "ring8, n: 2000").replace("ARCH", MLP).replace("LOSS", "wasserstein")
    )
    suite, registry = load_suite(write_suite(text.replace("CONSTRAINT", "gradient_penalty")))
    straight = [Keep() for _ in suite.runs]
    train_stacked(suite.runs, straight, registry=registry, device="cpu")
    first = [Keep(stop_at=6) for _ in suite.runs]  # interrupted after the step-4 checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_stacked(suite.runs, first, registry=registry, device="cpu", checkpoint_every=4)
    assert all(k.checkpoint["step"] == 4 for k in first)
    resumed = [Keep(start=k.checkpoint) for k in first]
    train_stacked(suite.runs, resumed, registry=registry, device="cpu")
    for a, b in zip(straight, resumed, strict=True):
        assert weights_gap(a, b) == 0
        assert a.values["loss_critic"][-2:] == b.values["loss_critic"]


def test_the_runner_groups_only_declared_runs_and_logs_the_execution(write_suite, tmp_path):
    text = TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0, 1, 2]")
    text = text.replace(
        "  bce: {loss: bce, constraint: none}",
        "  bce: {loss: bce, constraint: none}\n  dragan: {loss: bce, constraint: dragan}",
    )
    suite, registry = load_suite(write_suite(text))
    jobs = grouping.plan_groups(suite.runs, registry, stack="on", max_members=2)
    assert [[s.strategy for s in job] for job in jobs] == [
        ["wgan-gp", "wgan-gp"],
        ["wgan-gp"],
        ["bce", "bce"],
        ["bce"],
        ["dragan"],
        ["dragan"],
        ["dragan"],
    ]
    assert "dragan" in grouping.refusal(suite.runs[-1], registry)
    assert grouping.plan_groups(suite.runs, registry, stack="off", max_members=16) == [
        (s,) for s in suite.runs
    ]
    store = Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    outcomes = run_suite(suite, registry, store, RunSettings(device="cpu", stack="on"), Progress())
    assert {o.status for o in outcomes} == {"finished"}
    client = MlflowClient(store.uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    execution = {
        (r.data.tags.get("strategy"), r.data.params.get("execution"))
        for r in runs
        if "execution" in r.data.params
    }
    assert execution == {("wgan-gp", "stacked:3"), ("bce", "stacked:3"), ("dragan", "per-run")}


def test_auto_measures_once_and_remembers_the_verdict(write_suite, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    suite, registry = load_suite(write_suite(TOY_SUITE))
    trials = []
    measure = stacked_training.trial

    def counted(*args, **kwargs):
        trials.append(1)
        return measure(*args, **kwargs)

    monkeypatch.setattr("harness.run.runner.trial", counted)
    for name in ("a", "b"):
        run_suite(
            suite, registry, Store(f"sqlite:///{tmp_path / name}.db"), RunSettings(device="cpu")
        )
    assert len(trials) == 2  # one per group configuration (wgan-gp, bce), not per invocation
    verdicts = (tmp_path / "cache" / "stacking.json").read_text()
    assert '"per_run_s"' in verdicts and '"stacked_s"' in verdicts


def test_elementwise_hooks_get_their_members_draws_and_means():
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    with Members(gens, rows=6):
        draw = torch.rand(6, 1)
        means = torch.arange(6.0).mean()
        with pytest.raises(MemberMixing, match="not one block per member"):
            torch.rand(())
    assert torch.equal(draw[:3], torch.rand(3, 1, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(draw[3:], torch.rand(3, 1, generator=torch.Generator().manual_seed(6)))
    assert means.tolist() == [1.0, 4.0]


def test_the_networks_compute_plainly_inside_a_constraints_hooks():
    """Inside :class:`Members` (around a constraint's hooks) a stacked pass is not asked
    about: a layer's own mean over a member's rows stays that member's mean (the mode would
    have split it into one mean per member), and the pass equals the pass outside."""

    class Centred(torch.nn.Module):  # the mean over the member's own samples (under vmap)
        def forward(self, x):
            return x - x.mean()

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(2, 3), Centred()) for _ in range(2)]
    stacked, x = Stacked(nets), torch.randn(8, 2)
    outside = stacked(x)
    with Members([torch.Generator() for _ in nets], rows=8):
        inside = stacked(x)
        draw = torch.rand(8, 1)  # the hooks' own draws still go through the mode
    assert torch.equal(inside, outside) and draw.shape == (8, 1)
    assert torch.equal(outside[:4], nets[0](x[:4]))


def test_a_round_copies_the_chosen_rows_once_and_again_after_an_update():
    torch.manual_seed(0)
    stacked = Stacked([torch.nn.Linear(2, 1) for _ in range(3)])
    x = torch.randn(4, 2)  # members 0 and 2, two samples each
    with stacked.only([0, 2]):
        first = stacked(x)
        copies = stacked.selected[1]
        stacked(x).sum().backward()
        assert stacked.selected[1] is copies  # the same copy: one backward through it
        with torch.no_grad():
            stacked.weights[0].add_(1.0)  # an optimiser step, in place
        after = stacked(x)
        assert stacked.selected[1] is not copies
    assert stacked.selected is None
    assert torch.allclose(after - first, x.sum(1, keepdim=True).detach())
    assert stacked.weights[0].grad[1].eq(0).all()  # member 1 computed nothing
    stacked.zero_grad()
    with stacked.only([1]):
        with torch.no_grad():
            stacked(x[:2])  # a pass without gradients first (a hook's look at the critic)
        stacked(x[:2]).sum().backward()  # then one with: not through the no-grad copy
    assert stacked.weights[0].grad[1].abs().sum() > 0


def test_a_nan_in_one_member_never_reaches_another():
    nets = []
    for s in range(3):
        torch.manual_seed(s)
        nets.append(
            torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 1))
        )
    with torch.no_grad():
        nets[1][0].weight.fill_(math.nan)
    stacked = Stacked(nets)
    out = stacked(torch.randn(6, 1, 4, 4))
    out.sum().backward()
    assert out[2:4].isnan().all() and out[[0, 1, 4, 5]].isfinite().all()
    for w in stacked.weights:
        assert w.grad[[0, 2]].isfinite().all()


def test_linear_networks_stack_without_vmap_and_give_its_numbers():
    """An MLP (packed or not) runs stacked as batched products, not under vmap: the same
    outputs and gradients bit for bit, a NaN member still alone; a layer not known to be
    per-sample (a batch-wide flatten, a custom module, batch norm, a parametrization)
    keeps vmap. Spectral norm's linear layers stack too, within rounding of vmap's."""
    torch.manual_seed(0)
    registry = Registry([])
    mlp = registry.get("architecture", "mlp").cls(width=16, depth=2, pack=2)
    critics = [mlp.build(2, (2,), "score")[1] for _ in range(3)]
    with torch.no_grad():
        critics[1].critic.body[1][0].weight[0, 0] = math.nan
    fast, slow = Stacked(critics), Stacked(critics)
    object.__setattr__(slow, "direct", None)
    assert fast.direct is not None
    x = torch.randn(3 * 8, 2)
    outs = [net(x) for net in (fast, slow)]
    assert torch.equal(outs[0].nan_to_num(), outs[1].nan_to_num())
    assert outs[0][4:8].isnan().all() and outs[0][[0, 1, 2, 3, 8, 9, 10, 11]].isfinite().all()
    for out in outs:
        out[[0, 1, 2, 3, 8, 9, 10, 11]].sum().backward()
    for a, b in zip(fast.weights, slow.weights, strict=True):
        assert torch.equal(a.grad[[0, 2]], b.grad[[0, 2]])

    class Centred(torch.nn.Module):  # subtracts the batch mean: mixes members
        def forward(self, x):
            return x - x.mean(0)

    for layer in (torch.nn.Flatten(0), Centred(), torch.nn.BatchNorm1d(4)):
        nets = [torch.nn.Sequential(torch.nn.Linear(2, 4), layer) for _ in range(2)]
        assert Stacked(nets).direct is None, layer
    sn = registry.get("constraint", "spectral_norm").cls(n_power_iterations=2)
    critics = [sn.wrap_critic(mlp.build(2, (2,), "score")[1]) for _ in range(3)]
    fast, slow = Stacked(critics), Stacked(critics)
    object.__setattr__(slow, "direct", None)
    assert fast.direct is not None  # spectral norm's power iteration batched by hand
    for _ in range(3):  # each pass iterates the members' own u, v
        close = torch.testing.assert_close
        close(fast(x), slow(x), rtol=1e-5, atol=1e-6)
        for a, b in zip(fast.stacked_buffers(), slow.stacked_buffers(), strict=True):
            close(a, b, rtol=1e-5, atol=1e-6)
    orth = registry.get("constraint", "orthogonal").cls()
    assert Stacked([orth.wrap_critic(mlp.build(2, (2,), "score")[1])]).direct is None


def test_the_kit_refuses_a_constraint_that_mixes_members():
    class BatchStd(Dragan):  # the perturbation scale is the std over the whole batch
        members = "elementwise"

    with pytest.raises(ContractError, match="member-major batch alone.*differs from its run alone"):
        check_constraint(BatchStd)

    class OneValue(NoConstraint):
        members = "elementwise"

        def penalty(self, critic, real, fake):
            return critic(real).pow(2).sum() / len(real)  # one value for all members

    with pytest.raises(ContractError, match="not one value per member"):
        check_constraint(OneValue)


def test_the_batchable_spectral_norm_is_torchs():
    from torch.nn.utils.parametrizations import spectral_norm as torchs

    from harness.builtins.spectral_layers import spectral_norm

    layers = []
    for make in (torchs, spectral_norm):
        torch.manual_seed(0)
        layers.append(make(torch.nn.Conv2d(2, 3, 3)))
    x = torch.randn(4, 2, 5, 5)
    for _ in range(3):
        assert torch.equal(layers[0](x), layers[1](x))


def test_simultaneous_updates_stack_as_pacgans_grid_code(write_suite):
    """PacGAN's grid code updates critic and generator from one batch: a packing maxout critic
    and a batch-norm generator, stacked, as each run alone."""
    arch = "{name: pacgan_toy, width: 8, depth: 2, gen_width: 8, gen_depth: 2, pack: 2}"
    text = TINY.replace("n_critic: 2,", "n_critic: 1, updates: simultaneous,")
    text = text.replace("DATA", "grid25, n: 2000").replace("ARCH", arch).replace("LOSS", "bce")
    suite, registry = load_suite(write_suite(text.replace("CONSTRAINT", "none")))
    (alone, _), (stacked, _) = alone_and_stacked(suite.runs, registry)
    for a, b in zip(alone, stacked, strict=True):
        assert weights_gap(a, b) < 1e-6
        got, want = (dict(k.values["loss_generator"]) for k in (b, a))
        assert got == pytest.approx(want, abs=1e-6)


def test_members_keep_their_own_critic_passes_and_checkpoints_resume_alone(write_suite):
    """A member's critic calls per step follow its own n_critic, and its checkpoint is a run's:
    resumed alone, it ends where its uninterrupted run alone ends."""
    specs, registry = suite_runs(write_suite)
    specs = [
        s.model_copy(update={"train": s.train.model_copy(update={"n_critic": n})})
        for s, n in zip(specs, (1, 3, 2), strict=True)
    ]
    alone = [train(s, registry=registry, device="cpu", sink=Keep()) for s in specs]
    first = [Keep(stop_at=4) for _ in specs]
    with pytest.raises(KeyboardInterrupt):
        train_stacked(specs, first, registry=registry, device="cpu", checkpoint_every=2)
    assert [k.checkpoint["passes_per_step"] for k in first] == [r.passes_per_step for r in alone]
    for spec, kept in zip(specs, first, strict=True):
        resumed, straight = Keep(start=kept.checkpoint), Keep()
        train(spec, registry=registry, device="cpu", sink=resumed)
        train(spec, registry=registry, device="cpu", sink=straight)
        assert weights_gap(resumed, straight) == 0


def test_parts_that_fail_stacked_train_run_by_run(write_suite, tmp_path, monkeypatch):
    """A declaration that does not hold (a random draw of one value for the whole batch) costs
    nothing but the attempt: stacked, the group fails and its runs train alone; under auto,
    the trial fails and is remembered as "run by run"."""

    class Careless(NoConstraint):
        members = "elementwise"

        def penalty(self, critic, real, fake):
            return torch.rand(()) * 0 + critic(real).mean() * 0

    monkeypatch.setattr("harness.builtins.constraints.NoConstraint", Careless)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    suite, registry = load_suite(write_suite(TOY_SUITE))
    registry.parts["constraint"]["none"] = registry.parts["constraint"]["none"].__class__(
        "constraint", "none", Careless, "test"
    )
    for stack, name in (("on", "a"), (None, "b")):
        store = Store(f"sqlite:///{tmp_path / name}.db")
        outcomes = run_suite(suite, registry, store, RunSettings(device="cpu", stack=stack))
        assert {o.status for o in outcomes} == {"finished"}
        assert {o.execution for o in outcomes if o.spec.strategy == "bce"} == {"per-run"}
    assert "MemberMixing" in (tmp_path / "cache" / "stacking.json").read_text()


def test_groups_are_even_and_a_multiple_of_the_workers(write_suite):
    """48 runs that may stack, at most 16 a group, on 2 workers: 4 groups of 12, not 3 of 16
    (which would leave a worker idle for the last third); on 1 worker, 3 of 16."""
    text = TOY_SUITE.replace("seeds: [0, 1]", f"seeds: {list(range(48))}")
    text = text.replace("  bce: {loss: bce, constraint: none}\n", "")
    suite, registry = load_suite(write_suite(text))
    sizes = lambda w: [  # noqa: E731
        len(j)
        for j in grouping.plan_groups(suite.runs, registry, stack="on", max_members=16, workers=w)
    ]
    assert sizes(1) == [16, 16, 16] and sizes(2) == [12, 12, 12, 12] and sizes(3) == [16, 16, 16]
    jobs = grouping.plan_groups(suite.runs[:5], registry, stack="on", max_members=2, workers=2)
    assert [len(j) for j in jobs] == [2, 2, 1] and [s.seed for j in jobs for s in j] == list(
        range(5)
    )


def test_tables_say_when_stacked_runs_time_is_a_share():
    import pandas as pd

    from harness.analysis.tables import footnote

    mixed = pd.DataFrame({"execution": ["per-run", "stacked:3", "stacked:3"]})
    assert "executed per-run and stacked: a stacked run's time columns are its share" in (
        footnote(mixed, ["sec_per_step"])
    )
    assert "executed" not in footnote(pd.DataFrame({"execution": ["per-run"]}), ["sec_per_step"])
