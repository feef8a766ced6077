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

import torch
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

    def stacked_buffers(self) -> list[Tensor]:
        return [getattr(self, f"buffer{i}") for i in range(len(self.buffer_names))]

    def forward(self, x: Tensor) -> Tensor:
        params = dict(zip(self.param_names, self.weights, strict=True))
        buffers = dict(zip(self.buffer_names, self.stacked_buffers(), strict=True))
        out = vmap(self._call, randomness="error")(
            params, buffers, x.unflatten(0, (self.count, -1))
        )
        return out.flatten(0, 1)

    @contextlib.contextmanager
    def keeping(self, active: list[bool] | None):
        """Inside, forward passes of members not ``active`` leave their buffers (batch-norm
        statistics) as they were."""
        kept = [m for m, on in enumerate(active or []) if not on]
        buffers = self.stacked_buffers() if kept else []
        saved = [b[kept].clone() for b in buffers]
        try:
            yield
        finally:
            with torch.no_grad():
                for b, old in zip(buffers, saved, strict=True):
                    b[kept] = old

    def member(self, m: int) -> dict[str, Tensor]:
        names = self.param_names + self.buffer_names
        tensors = list(self.weights) + self.stacked_buffers()
        return {name: t[m].detach().clone() for name, t in zip(names, tensors, strict=True)}


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

    def __init__(
        self, generators: list[torch.Generator], rows: int, active: list[bool] | None = None
    ):
        super().__init__()
        self.generators, self.rows = generators, rows
        self.active = active or [True] * len(generators)

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
            [
                draw(block, generator=g, dtype=dtype, device=device)
                if on
                else torch.zeros(block, dtype=dtype, device=device)
                for g, on in zip(self.generators, self.active, strict=True)
            ]
        )


def per_member(fn, *tensors: Tensor, members: int) -> Tensor:
    """``fn`` (a loss over one run's batch) for each member, as a vector: ``vmap`` over the
    member-major tensors split per member."""
    return vmap(fn)(*(t.unflatten(0, (members, -1)) for t in tensors))
