"""M members of one network trained as one model (issue 25): their parameters and buffers
stacked on a first axis, ``vmap`` over ``functional_call`` (linear layers become batched
products, convolutions grouped ones, batch norm keeps per-member statistics; never a
block-diagonal matrix, so a NaN in one member stays in it).

Stacked tensors are **member-major**: a batch of M members × B samples is one tensor of
M·B rows, member m's rows ``m·B … (m+1)·B − 1``. Constraints that declare
``members = "elementwise"`` see such tensors unchanged; :class:`Members` gives each member its
own random numbers and per-member means while they run.
"""

from __future__ import annotations

import contextlib
import copy
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.overrides import TorchFunctionMode


class Stacked(nn.Module):
    """``modules`` (same structure, own weights) as one module mapping member-major inputs
    to member-major outputs; ``member(m)`` is member m's state dict."""

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        params, buffers = stack_module_state(modules)
        self.count = len(modules)
        self.param_names, self.buffer_names = list(params), list(buffers)
        self.weights = nn.ParameterList(nn.Parameter(p.detach()) for p in params.values())
        for i, tensor in enumerate(buffers.values()):
            self.register_buffer(f"buffer{i}", tensor)
        base = copy.deepcopy(modules[0]).to("meta")
        self._call = lambda p, b, x: functional_call(base, (p, b), (x,))  # noqa: E731
        self.chosen: Tensor | None = None  # the members that compute (None: all)
        self.selected: tuple[tuple, list[Tensor]] | None = None  # their rows, reused
        self.current: list[Tensor] = []  # the weights and buffers the direct copy uses
        copied = direct(base, self.param_names + self.buffer_names, self.current)
        object.__setattr__(self, "direct", copied)  # not a submodule: it owns no weights

    def stacked_buffers(self) -> list[Tensor]:
        return [getattr(self, f"buffer{i}") for i in range(len(self.buffer_names))]

    def forward(self, x: Tensor) -> Tensor:
        """The members' outputs; inside a constraint's hooks the networks compute plainly
        (:class:`Members` only concerns the constraint's own draws and means, and asking it
        about every operation of the pass cost a tenth of a small network's step)."""
        if not Members.active:
            return self.compute(x)
        with torch._C.DisableTorchFunction():
            return self.compute(x)

    def compute(self, x: Tensor) -> Tensor:
        weights, buffers = list(self.weights), self.stacked_buffers()
        index = self.chosen
        if index is not None:  # copies of the chosen rows; gradients flow back to them
            weights, buffers = self.select(weights, buffers, index)
        if self.direct is not None:
            self.current[:] = weights + buffers
            out = self.direct(x)
        else:
            out = vmap(self._call, randomness="error")(
                dict(zip(self.param_names, weights, strict=True)),
                dict(zip(self.buffer_names, buffers, strict=True)),
                x.unflatten(0, (len(weights[0]), -1)),
            ).flatten(0, 1)
        if index is not None:  # buffers the pass updated (statistics, power iterations)
            with torch.no_grad():
                for full, rows in zip(self.stacked_buffers(), buffers, strict=True):
                    full.index_copy_(0, index, rows)
        return out

    def select(self, weights: list[Tensor], buffers: list[Tensor], index: Tensor):
        """The chosen rows of the weights and buffers: copied once and reused by the calls
        that follow (one backward through the copy for a round's real, fake and penalty
        passes), copied again once an update has changed the weights in place or gradients
        are wanted where the copy was made without them."""
        grads = torch.is_grad_enabled() and any(w.requires_grad for w in weights)
        versions = (grads, *(w._version for w in weights))
        if self.selected is None or self.selected[0] != versions:
            rows = [t.index_select(0, index) for t in weights + buffers]
            self.selected = versions, rows
        rows = self.selected[1]
        return rows[: len(weights)], rows[len(weights) :]

    @contextlib.contextmanager
    def only(self, chosen: list[int] | None):
        """Inside, only the members ``chosen`` (None: all) compute: inputs and outputs hold
        their rows alone; the others' buffers are untouched and their gradient rows zero."""
        device = self.weights[0].device
        self.chosen = None if chosen is None else torch.tensor(chosen, device=device)
        try:
            yield
        finally:
            self.chosen = self.selected = None

    @contextlib.contextmanager
    def keeping(self, chosen: list[int] | None):
        """Inside, members not ``chosen`` keep their weights and buffers as they were (a
        constraint's projection acts on the whole stack; it applies to the chosen only)."""
        kept = [m for m in range(self.count) if chosen is not None and m not in chosen]
        tensors = list(self.weights) + self.stacked_buffers() if kept else []
        saved = [t.detach()[kept].clone() for t in tensors]
        try:
            yield
        finally:
            with torch.no_grad():
                for t, old in zip(tensors, saved, strict=True):
                    t[kept] = old

    def member(self, m: int) -> dict[str, Tensor]:
        names = self.param_names + self.buffer_names
        tensors = list(self.weights) + self.stacked_buffers()
        return {name: t[m].detach().clone() for name, t in zip(names, tensors, strict=True)}


PER_SAMPLE = (  # layers that compute each sample (row) on its own, with no weights
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Softplus, nn.Tanh, nn.Sigmoid,
    nn.Identity, nn.Sequential,
)  # fmt: skip


def direct(base: nn.Module, names: list[str], tensors: list[Tensor]) -> nn.Module | None:
    """``base`` computing all members on member-major batches without ``vmap`` (whose cost
    per call is larger than a small MLP's arithmetic), or None unless every part of it is
    known to allow that: linear layers, spectrally normalised or not, become
    :class:`MemberLinear` (one batched product over the stacked weights, what ``vmap``
    does); per-sample activations, flattening of sample dimensions and modules that declare
    ``member_major = True`` (their own forward reshapes samples only in aligned groups and
    calls their children) stay; no other weights, buffers, parametrizations or hooks.
    ``tensors``: the stacked weights and buffers in the order of ``names``, set per call."""
    index = {name: i for i, name in enumerate(names)}
    copied, replaced, used = copy.deepcopy(base), [], set()
    for name, module in list(copied.named_modules()):
        if any(name.startswith(f"{r}.") for r in replaced):
            continue  # inside a layer replaced whole
        if module._forward_hooks or module._forward_pre_hooks:
            return None
        member = member_linear(module, name, index, tensors)
        if member is not None:
            used.update(member.uses)
            if not name:
                return member if used == set(index.values()) else None
            parent, _, child = name.rpartition(".")
            setattr(copied.get_submodule(parent), child, member)
            replaced.append(name)
        elif not per_sample(module) or any(module.parameters(recurse=False)):
            return None
    return copied if used == set(index.values()) else None


def member_linear(module: nn.Module, name: str, index: dict, tensors: list[Tensor]):
    """The :class:`MemberLinear` computing ``module`` (at ``name``) for all members, or None
    when it is not a plain or spectrally normalised ``nn.Linear``."""
    at = lambda leaf: index.get(f"{name}.{leaf}" if name else leaf)  # noqa: E731
    if type(module) is nn.Linear:
        return MemberLinear(tensors, at("weight"), at("bias"))
    from harness.builtins.spectral_layers import BatchableSpectralNorm

    norms = getattr(getattr(module, "parametrizations", None), "weight", ())
    if not (
        len(norms) == 1
        and type(norms[0]) is BatchableSpectralNorm
        and isinstance(module, nn.Linear)
        and list(module.parametrizations) == ["weight"]
    ):
        return None
    norm = norms[0]
    power = (at("parametrizations.weight.0._u"), at("parametrizations.weight.0._v"))
    power += (norm.n_power_iterations if norm.training else 0, norm.eps)
    return MemberLinear(tensors, at("parametrizations.weight.original"), at("bias"), power)


def per_sample(module: nn.Module) -> bool:
    if type(module) is nn.Flatten:
        return module.start_dim >= 1
    if type(module) is nn.Unflatten:
        return isinstance(module.dim, int) and module.dim >= 1
    kind = type(module)
    return kind in PER_SAMPLE + builtin_member_major() or getattr(kind, "member_major", 0) is True


@cache
def builtin_member_major() -> tuple[type, ...]:
    """The built-in wrappers whose forward is per sample (the critic's flatten of its scores,
    PacGAN's packing of consecutive samples: packs never straddle members), recognised here
    rather than declared there, so that their runs keep their keys."""
    from harness.builtins.architecture_nets import Critic
    from harness.builtins.packing import packed_class

    return Critic, packed_class()


class MemberLinear(nn.Module):
    """``nn.Linear`` for all members at once: member m's rows times its own weight, one
    batched product (``bmm``) over the stacked (M, out, in) weight, then the bias. With
    ``power`` (u, v, iterations, eps) the weight is spectrally normalised first, as torch's
    parametrization does for each member: its power iteration on the member's own vectors,
    then the weight over ``u · W v``."""

    def __init__(self, tensors: list[Tensor], weight: int, bias: int | None, power=None):
        super().__init__()
        self.tensors, self.weight, self.bias, self.power = tensors, weight, bias, power
        self.uses = {weight, bias, *(power or ())[:2]} - {None}  # what it reads

    def forward(self, x: Tensor) -> Tensor:
        w = self.tensors[self.weight]
        if self.power:
            w = self.normalised(w)
        out = torch.bmm(x.unflatten(0, (len(w), -1)), w.transpose(1, 2))
        if self.bias is not None:
            out = out + self.tensors[self.bias].unsqueeze(1)
        return out.flatten(0, 1)

    def normalised(self, w: Tensor) -> Tensor:
        u_at, v_at, iterations, eps = self.power
        u, v = self.tensors[u_at], self.tensors[v_at]
        with torch.no_grad():
            for _ in range(iterations):
                u.copy_(F.normalize(torch.bmm(w, v.unsqueeze(2)).squeeze(2), dim=1, eps=eps))
                wt_u = torch.bmm(w.transpose(1, 2), u.unsqueeze(2)).squeeze(2)
                v.copy_(F.normalize(wt_u, dim=1, eps=eps))
        u, v = u.clone(), v.clone()
        sigma = (u * torch.bmm(w, v.unsqueeze(2)).squeeze(2)).sum(1)
        return w / sigma.view(-1, 1, 1)


class MemberMixing(RuntimeError):
    """A constraint declared ``members = "elementwise"`` did something across members."""


RANDOM_SHAPED = {torch.rand, torch.randn}  # (size, ...) factories
RANDOM_LIKE = {torch.rand_like, torch.randn_like}


class Members(TorchFunctionMode):
    """While active (around a constraint's hooks on member-major tensors): a random tensor
    whose first dimension is M·B is drawn as M blocks, block m from member m's generator, the
    block a single run would draw; a random draw of another shape raises :class:`MemberMixing`;
    a full ``mean()`` of a tensor whose first dimension is a multiple of M is the M members'
    own means, a vector, so a penalty ``λ·mean(...)`` comes back per member."""

    active = 0  # how many are entered (in this process)

    def __init__(self, generators: list[torch.Generator], rows: int):
        super().__init__()
        self.generators, self.rows = generators, rows

    def __enter__(self):
        Members.active += 1
        return super().__enter__()

    def __exit__(self, *exc):
        Members.active -= 1
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in RANDOM_SHAPED or func in RANDOM_LIKE:
            return self._draw(func, args, kwargs)
        if func in (torch.mean, Tensor.mean) and len(args) == 1 and not kwargs.get("dim"):
            t = args[0]
            m = len(self.generators)
            if t.dim() and t.shape[0] % m == 0:
                return func(t.unflatten(0, (m, -1)).flatten(1), dim=1, **kwargs)
        return func(*args, **kwargs)

    def _draw(self, func, args, kwargs):
        like = func in RANDOM_LIKE
        if like:
            template = args[0]
            size, dtype = tuple(template.shape), kwargs.get("dtype", template.dtype)
            device = kwargs.get("device", template.device)
        else:
            size = kwargs.get("size") or (
                args[0] if len(args) == 1 and not isinstance(args[0], int) else args
            )
            size, dtype, device = tuple(size), kwargs.get("dtype"), kwargs.get("device")
        if not size or size[0] != self.rows:
            raise MemberMixing(
                f"a random draw of shape {tuple(size)} is not one block per member "
                f"(first dimension {self.rows} = members × batch)"
            )
        draw = torch.rand if func in (torch.rand, torch.rand_like) else torch.randn
        block = (self.rows // len(self.generators),) + tuple(size[1:])
        # a mode is off while its handler runs: these draws are plain ones
        return torch.cat(
            [draw(block, generator=g, dtype=dtype, device=device) for g in self.generators]
        )


def per_member(fn, *tensors: Tensor, members: int) -> Tensor:
    """``fn`` (a loss over one run's batch) for each member, as a vector: ``vmap`` over the
    member-major tensors split per member."""
    return vmap(fn)(*(t.unflatten(0, (members, -1)) for t in tensors))
