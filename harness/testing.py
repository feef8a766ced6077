"""A conformance kit for plugin parts: call it from your plugin's tests.

    import pytest
    from harness.testing import DEVICES, check_constraint

    @pytest.mark.parametrize("device", DEVICES)  # CPU, and CUDA when present
    def test_contract(device):
        check_constraint(MaxNorm, device=device, c=0.5)

Each ``check_*`` takes the part's class (plus its parameters) or an instance, uses it the way
the trainer does on tiny reference models, and raises ``AssertionError`` naming the part and
the broken rule.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from harness.core.errors import ContractError
from harness.core.parts import (
    Architecture,
    ClassModes,
    Constraint,
    Dataset,
    GaussianModes,
    Loss,
    critic_pack,
)
from harness.run.member_checks import check_architecture_members, check_constraint_members
from harness.run.trainer import seed_everything

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]
SHAPES = [(2,), (1, 28, 28), (3, 28, 28), (3, 32, 32)]  # tried by check_architecture
BATCH, Z_DIM = 8, 4

__all__ = [
    "DEVICES",
    "ContractError",
    "check_architecture",
    "check_constraint",
    "check_dataset",
    "check_loss",
]


def _require(ok: bool, label: str, rule: str) -> None:
    if not ok:
        raise ContractError(label, rule)


def _require_shape(value, shape: tuple, label: str, rule: str) -> None:
    """``value`` is a tensor of ``shape``; else the rule, and the shape it got."""
    got = tuple(getattr(value, "shape", ()))
    _require(isinstance(value, Tensor) and value.shape == shape, label, f"{rule}, got {got}")


def _call(label: str, hook: str, fn: Callable, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except AssertionError:
        raise
    except Exception as exc:
        raise ContractError(label, f"{hook} raised {type(exc).__name__}: {exc}") from exc


def _factory(part, base: type, params: dict[str, Any]) -> tuple[Callable[[], Any], str]:
    """A maker of fresh, identically configured instances, and the part's label."""
    kind = base.__name__.lower()
    if isinstance(part, type):
        if not issubclass(part, base):
            raise TypeError(
                f"{part.__qualname__} is not a subclass of harness.parts.{base.__name__}"
            )
        return (lambda: part(**params)), f"{kind} {part.__qualname__}"
    if not isinstance(part, base):
        raise TypeError(f"{part!r} is not a harness.parts.{base.__name__}")
    if params:
        raise TypeError("pass parameters with the part's class, not with an instance")
    return (lambda: copy.deepcopy(part)), f"{kind} {type(part).__qualname__}"


def _same(a: Tensor, b: Tensor) -> bool:
    """Bit-identical on CPU; within float tolerance on CUDA (atomics reorder sums there)."""
    if a.shape != b.shape:
        return False
    if a.device.type == "cpu":
        return torch.equal(a, b)
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)


def _flat(tensors) -> Tensor:
    return torch.cat([t.detach().flatten().float() for t in tensors])


class _GraphWatch(TorchFunctionMode):
    """Records the first torch operation whose result carries an autograd graph."""

    built: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        results = out if isinstance(out, tuple | list) else (out,)
        if self.built is None and any(_grad_fn(t) is not None for t in results):
            self.built = getattr(func, "__name__", str(func))
        return out


def _grad_fn(value):
    try:
        return value.grad_fn if isinstance(value, Tensor) else None
    except RuntimeError:  # a no_grad view of a tensor changed in place: no graph there
        return None


# --- constraints -------------------------------------------------------------------------


def _reference_models(shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """A tiny generator and critic (N,) for 2-D points (MLP) or 1×8×8 images (conv)."""
    dim = math.prod(shape)
    generator = nn.Sequential(
        nn.Linear(Z_DIM, 16), nn.ReLU(), nn.Linear(16, dim), nn.Unflatten(1, shape)
    )
    if len(shape) == 1:
        body = [nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, 1)]
    else:
        channels, height, width = shape
        conv = nn.Conv2d(channels, 4, 3, stride=2, padding=1)
        flat = 4 * (height // 2) * (width // 2)
        body = [conv, nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(flat, 1)]
    return generator, nn.Sequential(*body, nn.Flatten(0))


def _constraint_trial(make, label: str, shape, device, seed: int) -> tuple[nn.Module, dict]:
    """One critic step as the trainer takes it; checks each hook and returns the wrapped
    critic with the values that must repeat under the same seed."""
    seed_everything(seed)
    generator, critic = (m.to(device) for m in _reference_models(shape))
    part = make()
    real = torch.randn(BATCH, *shape, device=device)
    fake = generator(torch.randn(BATCH, Z_DIM, device=device))  # in the graph: leaks show

    architecture = dict(critic.named_parameters())
    critic = _call(label, "wrap_critic", part.wrap_critic, critic)
    _require(
        isinstance(critic, nn.Module),
        label,
        f"wrap_critic must return an nn.Module, got {type(critic).__name__}",
    )
    out = _call(label, "the wrapped critic", critic, real)
    _require_shape(
        out, (BATCH,), label, f"wrap_critic must keep the critic's output shape ({BATCH},)"
    )
    _check_evaluation_calls(label, critic, real)
    frozen = [n for n, p in critic.named_parameters() if not p.requires_grad]
    _require(
        not frozen and any(True for _ in critic.parameters()),
        label,
        "wrap_critic must keep the critic's parameters trainable; frozen: "
        + (", ".join(frozen) or "all (it has no parameters)"),
    )
    kept = {id(p) for p in critic.parameters()}
    lost = [n for n, p in architecture.items() if id(p) not in kept]
    _require(
        not lost,
        label,
        "wrap_critic must keep the critic's Parameter objects (reparametrize them, e.g. with "
        "torch.nn.utils.parametrize, instead of assigning a new nn.Parameter); replaced: "
        + ", ".join(lost),
    )
    values = {"critic output after wrap_critic": out.detach()}
    trained = dict(critic.named_parameters())  # what the trainer's optimiser will hold

    penalty = _call(label, "penalty", part.penalty, critic, real, fake)
    _check_same_parameters(label, "penalty", critic, trained)
    if penalty is not None:
        _check_penalty(label, penalty, generator, critic)
        values["penalty"] = penalty.detach()

    critic.zero_grad(set_to_none=True)
    step = lambda: (critic(fake.detach()).mean() - critic(real).mean()).backward()  # noqa: E731
    _call(label, "a critic step through the wrapped critic", step)
    with torch.no_grad():
        for p in critic.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    with _GraphWatch() as watch:
        returned = _call(label, "after_critic_step", part.after_critic_step, critic)
    _require(
        watch.built is None,
        label,
        "after_critic_step must run without building an autograd graph (wrap it in "
        f"torch.no_grad()), but {watch.built} produced a tensor with a grad_fn",
    )
    _require(
        not (isinstance(returned, Tensor) and returned.requires_grad),
        label,
        "after_critic_step must not return a tensor that requires grad",
    )
    _check_same_parameters(label, "after_critic_step", critic, trained)
    bad = [n for n, p in critic.named_parameters() if p.grad_fn is not None or not p.requires_grad]
    _require(
        not bad,
        label,
        "after_critic_step must leave parameters trainable leaf tensors; broken: " + ", ".join(bad),
    )
    params = _flat(critic.parameters())
    _require(bool(params.isfinite().all()), label, "after_critic_step left non-finite parameters")
    values["parameters after after_critic_step"] = params
    return critic, values


NO_GRAD_RULE = (
    "the wrapped critic must run under torch.no_grad(): evaluation, the conformance kit and "
    "the preflight call it so; a wrapper that needs input gradients takes them under "
    "torch.enable_grad(), with create_graph=torch.is_grad_enabled() as it was called"
)
INPUT_GRAD_RULE = (
    "the wrapped critic must be differentiable with respect to its input: the Lipschitz "
    "metrics and gradient penalties take the gradient of its output in x"
)


def _check_evaluation_calls(label: str, critic: nn.Module, x: Tensor) -> None:
    """The two ways the harness calls a critic besides training: scoring under
    ``torch.no_grad()`` (evaluation, the preflight) and differentiating it in its input (the
    Lipschitz metrics)."""
    try:
        with torch.no_grad():
            scores = critic(x)
    except Exception as exc:
        raise ContractError(
            label, f"{NO_GRAD_RULE}; it raised {type(exc).__name__}: {exc}"
        ) from exc
    _require(
        isinstance(scores, Tensor) and scores.shape == (len(x) // critic_pack(critic),),
        label,
        f"{NO_GRAD_RULE}; under it the output has shape {tuple(getattr(scores, 'shape', ()))}",
    )
    try:
        inputs = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(critic(inputs).sum(), inputs)
    except Exception as exc:
        raise ContractError(
            label, f"{INPUT_GRAD_RULE}; it raised {type(exc).__name__}: {exc}"
        ) from exc
    _require(bool(grad.isfinite().all()), label, f"{INPUT_GRAD_RULE}; the gradient is not finite")


def _check_packed(make, label: str, device) -> None:
    """A critic that packs k samples (PacGAN) keeps scoring packs once wrapped, and the harness
    still finds k: it reads ``pack`` from the critic or from a module inside it."""
    from harness.builtins.packing import packed

    seed_everything(0)
    pack = 2
    critic = packed(lambda shape: _reference_models(shape)[1], (2,), pack).to(device)
    wrapped = _call(label, "wrap_critic of a packed critic", make().wrap_critic, critic)
    x = torch.randn(pack * BATCH, 2, device=device)
    out = _call(label, "the wrapped packed critic", wrapped, x)
    _require_shape(
        out,
        (BATCH,),
        label,
        f"wrap_critic must keep a critic that packs {pack} samples scoring packs: "
        f"{pack * BATCH} samples must give ({BATCH},)",
    )
    _require(
        critic_pack(wrapped) == pack,
        label,
        f"wrap_critic must keep the packing critic inside the wrapped one (a module with "
        f"pack = {pack}), so that metrics score whole packs; the harness finds pack = "
        f"{critic_pack(wrapped)}",
    )
    _check_evaluation_calls(label, wrapped, x)


def _check_same_parameters(label: str, hook: str, critic: nn.Module, trained: dict) -> None:
    """The optimiser holds the wrapped critic's Parameter objects: a hook that assigns new
    ones leaves it updating stale tensors, and the critic silently stops learning."""
    now = dict(critic.named_parameters())
    replaced = [n for n, p in trained.items() if now.get(n) is not p]
    replaced += [n for n in now if n not in trained]
    _require(
        not replaced,
        label,
        f"{hook} must update the critic's parameters in place (p.copy_(...), p.clamp_(...) "
        "under torch.no_grad()), never assign a new nn.Parameter: the optimiser keeps "
        "updating the old ones and the critic stops learning; replaced: " + ", ".join(replaced),
    )


def _check_penalty(label: str, penalty, generator: nn.Module, critic: nn.Module) -> None:
    _require(
        isinstance(penalty, Tensor) and penalty.dim() == 0 and penalty.is_floating_point(),
        label,
        "penalty must return a floating-point scalar tensor (shape ()) or None, got "
        + (f"shape {tuple(penalty.shape)}" if isinstance(penalty, Tensor) else repr(penalty)),
    )
    _require(bool(penalty.isfinite()), label, f"penalty must be finite, got {penalty.item()}")
    _require(
        penalty.requires_grad,
        label,
        "penalty must backpropagate into the critic, but it does not require grad",
    )
    generator.zero_grad(set_to_none=True)
    critic.zero_grad(set_to_none=True)
    _call(label, "penalty.backward()", penalty.backward)
    leaked = [n for n, p in generator.named_parameters() if p.grad is not None and p.grad.any()]
    _require(
        not leaked,
        label,
        "penalty must backpropagate into the critic only, but gradients reached the "
        f"generator ({', '.join(leaked)}): detach the fake samples",
    )
    grads = [p.grad for p in critic.parameters() if p.grad is not None]
    _require(
        bool(grads),  # zero is fine: a one-sided penalty may be inactive
        label,
        "penalty must backpropagate into the critic, but no critic parameter got a gradient",
    )
    _require(
        all(bool(g.isfinite().all()) for g in grads),
        label,
        "penalty must give finite gradients to the critic",
    )


def check_constraint(part: type[Constraint] | Constraint, /, *, device="cpu", **params) -> None:
    """Check a Lipschitz constraint on an MLP and a conv critic: ``wrap_critic`` keeps the
    output shape, trainable parameters and the critic's Parameter objects; ``penalty`` is
    ``None`` or a finite scalar that backpropagates into the critic and not into the
    generator; ``penalty`` and ``after_critic_step`` change parameters only in place (the
    optimiser holds them); ``after_critic_step`` builds no autograd graph; the wrapped critic
    runs under ``torch.no_grad()`` and is differentiable in its input (how evaluation and the
    Lipschitz metrics call it); a critic packing k samples keeps scoring packs once wrapped;
    all of it repeats under a seed; the wrapped critic's ``state_dict`` loads into a
    freshly wrapped critic, which then gives the same outputs; and a constraint declaring
    ``members`` trains stacked as each member alone (:mod:`harness.run.member_checks`)."""
    make, label = _factory(part, Constraint, params)
    device = torch.device(device)
    _check_packed(make, label, device)
    for shape in [(2,), (1, 8, 8)]:
        nets = lambda shape=shape: _reference_models(shape)  # noqa: E731
        check_constraint_members(make, label, nets, shape, device)
        critic, first = _constraint_trial(make, label, shape, device, seed=0)
        _, again = _constraint_trial(make, label, shape, device, seed=0)
        for what, value in first.items():
            _require(
                _same(value, again[what]),
                label,
                f"must be deterministic under a seed, but the {what} differs between two runs "
                "with seed 0",
            )
        seed_everything(1)
        fresh = make().wrap_critic(_reference_models(shape)[1].to(device))
        try:
            fresh.load_state_dict(critic.state_dict())
        except Exception as exc:
            raise ContractError(
                label, f"the wrapped critic's state_dict must load into a fresh one: {exc}"
            ) from exc
        x = torch.randn(BATCH, *shape, device=device)
        with torch.no_grad():
            same = _same(critic.eval()(x), fresh.eval()(x))
        _require(
            same,
            label,
            "a freshly wrapped critic loaded with the wrapped critic's state_dict must give the "
            "same outputs (keep state in parameters or buffers)",
        )


# --- losses ------------------------------------------------------------------------------


def _scalar(label: str, hook: str, value) -> Tensor:
    _require(
        isinstance(value, Tensor) and value.dim() == 0 and value.is_floating_point(),
        label,
        f"{hook} must return a floating-point scalar tensor (shape ()), got "
        + (f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else repr(value)),
    )
    _require(bool(value.isfinite()), label, f"{hook} must be finite, got {value.item()}")
    _require(value.requires_grad, label, f"{hook} must backpropagate into the critic's outputs")
    return value


def _loss_trial(make, label: str, device) -> dict[str, Tensor]:
    loss = make()
    seed_everything(0)
    real_out = (0.1 * torch.randn(16, device=device)).requires_grad_(True)
    fake_out = (0.1 * torch.randn(16, device=device)).requires_grad_(True)
    critic = _scalar(
        label, "critic_loss", _call(label, "critic_loss", loss.critic_loss, real_out, fake_out)
    )
    d_real, d_fake = torch.autograd.grad(critic, (real_out, fake_out), allow_unused=True)
    _require(
        d_real is not None and bool(d_real.sum() < 0),
        label,
        "critic_loss must fall as the critic's outputs on real samples rise",
    )
    _require(
        d_fake is not None and bool(d_fake.sum() > 0),
        label,
        "critic_loss must rise as the critic's outputs on fake samples rise",
    )
    gen = _scalar(
        label, "generator_loss", _call(label, "generator_loss", loss.generator_loss, fake_out)
    )
    (d_gen,) = torch.autograd.grad(gen, fake_out, allow_unused=True)
    _require(
        d_gen is not None and bool(d_gen.sum() < 0),
        label,
        "generator_loss must fall as the critic's outputs on fake samples rise",
    )
    return {"critic_loss": critic.detach(), "generator_loss": gen.detach()}


def check_loss(part: type[Loss] | Loss, /, *, device="cpu", **params) -> None:
    """Check a GAN loss: ``output`` is ``"logit"`` or ``"score"``; both losses are finite
    scalars that backpropagate into the critic's outputs, in the right direction (higher
    output = more real), and repeat under a seed."""
    make, label = _factory(part, Loss, params)
    output = make().output
    _require(
        output in ("logit", "score"), label, f"output must be 'logit' or 'score', got {output!r}"
    )
    device = torch.device(device)
    first, again = _loss_trial(make, label, device), _loss_trial(make, label, device)
    for what, value in first.items():
        _require(
            _same(value, again[what]),
            label,
            f"must be deterministic under a seed, but {what} differs between two runs",
        )


# --- architectures -----------------------------------------------------------------------


def _build(make, label: str, z_dim: int, shape, output: str, device, seed: int):
    seed_everything(seed)
    built = _call(label, "build", make().build, z_dim, shape, output)
    _require(
        isinstance(built, tuple)
        and len(built) == 2
        and all(isinstance(m, nn.Module) for m in built),
        label,
        f"build must return (generator, critic) nn.Modules, got {type(built).__name__}",
    )
    return built[0].to(device), built[1].to(device)


def _check_pair(label, generator, critic, z_dim: int, shape, device, independent=True) -> Tensor:
    z = torch.randn(BATCH, z_dim, device=device)
    x = _call(label, "the generator", generator, z)
    _require_shape(
        x,
        (BATCH, *shape),
        label,
        f"the generator must map z ({BATCH}, {z_dim}) to ({BATCH}, {', '.join(map(str, shape))})",
    )
    out = _call(label, "the critic", critic, x)
    _require_shape(
        out, (BATCH,), label, f"the critic must return one value per sample, shape ({BATCH},)"
    )
    _require(bool(out.isfinite().all()), label, "the critic's outputs must be finite")
    part = _call(label, "the critic", critic, x[:2])
    _require(
        not independent or torch.allclose(part, out[:2], rtol=1e-4, atol=1e-5),
        label,
        "the critic must treat samples independently (no batch norm): per-sample gradient "
        "penalties need it; an architecture whose critic does not declares "
        "per_sample_critic = False",
    )
    out.mean().backward()
    for role, module in (("generator", generator), ("critic", critic)):
        dead = [n for n, p in module.named_parameters() if p.grad is None]
        _require(
            any(True for _ in module.parameters()) and not dead,
            label,
            f"every {role} parameter must be trainable and used; without a gradient: "
            + (", ".join(dead) or "all (it has no parameters)"),
        )
    return torch.cat([x.detach().flatten(), out.detach()])


def check_architecture(
    part: type[Architecture] | Architecture,
    /,
    *,
    data_shape: tuple[int, ...] | None = None,
    z_dim: int = Z_DIM,
    device="cpu",
    **params,
) -> None:
    """Check an architecture for ``data_shape`` (default: each of ``SHAPES`` that ``build``
    accepts; it may refuse the others with ``ValueError``): the generator maps (N, z_dim) to
    (N, *data_shape), the critic to (N,) finite values, sample by sample; every parameter gets
    a gradient; building repeats under a seed; state_dicts load into a fresh build; and an
    architecture declaring ``stackable`` gives each member its own outputs and gradients
    when stacked (:mod:`harness.run.member_checks`)."""
    make, label = _factory(part, Architecture, params)
    device, independent = torch.device(device), make().per_sample_critic
    shapes = [tuple(data_shape)] if data_shape else [s for s in SHAPES if _accepts(make, s)]
    _require(bool(shapes), label, f"build accepts none of the shapes {SHAPES}; pass data_shape=")
    for i, shape in enumerate(shapes):
        for output in ("score", "logit"):
            pair = _build(make, label, z_dim, shape, output, device, seed=0)
            seed_everything(0)
            values = _check_pair(label, *pair, z_dim, shape, device, independent)
            if i == 0 and output == "score":
                _check_repeatable(make, label, pair, values, z_dim, shape, device)
                check_architecture_members(make, label, z_dim, shape, output, device)


def _check_repeatable(make, label, pair, values, z_dim, shape, device) -> None:
    independent = make().per_sample_critic
    again = _build(make, label, z_dim, shape, "score", device, seed=0)
    seed_everything(0)
    _require(
        _same(values, _check_pair(label, *again, z_dim, shape, device, independent)),
        label,
        f"build must be deterministic under a seed, but for data shape {shape} two builds "
        "with seed 0 differ",
    )
    fresh = _build(make, label, z_dim, shape, "score", device, seed=1)
    for module, other in zip(pair, fresh, strict=True):
        other.load_state_dict(module.state_dict())
    seed_everything(0)
    _require(
        _same(values, _check_pair(label, *fresh, z_dim, shape, device, independent)),
        label,
        "a fresh build loaded with the state_dicts must give the same outputs",
    )


def _accepts(make, shape: tuple[int, ...]) -> bool:
    """Whether ``build`` takes this data shape (it refuses others with ValueError)."""
    try:
        make().build(Z_DIM, shape, "score")
    except ValueError:
        return False
    except Exception:
        return True  # _build reports it, naming the part
    return True


# --- datasets ----------------------------------------------------------------------------


def _check_samples(label: str, what: str, samples, labels: int | None) -> None:
    _require(
        isinstance(samples, tuple) and len(samples) == 2,
        label,
        f"{what} must return Samples(x, y), got {type(samples).__name__}",
    )
    x, y = samples
    _require(
        isinstance(x, Tensor) and x.is_floating_point() and x.dim() >= 2 and len(x) > 0,
        label,
        f"{what}: x must be a non-empty floating-point tensor (N, *shape)",
    )
    _require(bool(x.isfinite().all()), label, f"{what}: x must be finite")
    _require(
        isinstance(y, Tensor) and y.dtype == torch.long and y.shape == (len(x),),
        label,
        f"{what}: y must be a long tensor of {len(x)} mode labels, got "
        + (f"{y.dtype} {tuple(y.shape)}" if isinstance(y, Tensor) else repr(y)),
    )
    if labels is not None:
        _require(
            bool(((y >= 0) & (y < labels)).all()),
            label,
            f"{what}: mode labels must lie in [0, {labels})",
        )


def check_dataset(part: type[Dataset] | Dataset, /, **params) -> None:
    """Check a dataset: ``load`` gives finite ``Samples(x, y)`` for both splits, of one sample
    shape, with labels that index its ``modes`` (2-D points for ``GaussianModes``); loading
    repeats under a seed; ``ClassModes`` data gives its evaluator's ``classifier_data``."""
    make, label = _factory(part, Dataset, params)
    dataset = make()
    modes = dataset.modes
    _require(
        modes is None or isinstance(modes, GaussianModes | ClassModes),
        label,
        f"modes must be None, GaussianModes or ClassModes, got {type(modes).__name__}",
    )
    count = modes.count if modes is not None else None
    shapes = set()
    for split in ("train", "test"):
        seed_everything(0)
        samples = _call(label, f"load({split!r})", dataset.load, split)
        _check_samples(label, f"load({split!r})", samples, count)
        shapes.add(tuple(samples.x.shape[1:]))
        seed_everything(0)
        again = _call(label, f"load({split!r})", make().load, split)
        _require(
            all(_same(a, b) for a, b in zip(samples, again, strict=True)),
            label,
            f"load({split!r}) must be deterministic under a seed",
        )
    _require(len(shapes) == 1, label, f"both splits must have one sample shape, got {shapes}")
    if isinstance(modes, GaussianModes):
        _require(
            shapes == {(2,)} and modes.centers.shape == (modes.count, 2),
            label,
            "GaussianModes data must be 2-D points with (K, 2) centers",
        )
    if isinstance(modes, ClassModes):
        pair = _call(label, "classifier_data", dataset.classifier_data)
        for split, samples in zip(("train", "test"), pair, strict=True):
            _check_samples(label, f"classifier_data {split}", samples, modes.n_classes)
