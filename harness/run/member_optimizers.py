"""The members' own optimisers as one (:mod:`harness.run.stacked_training`): each member's
update is exactly what its own ``torch.optim`` optimiser would do, bit for bit.

Adam and RMSprop (as the harness builds them: no weight decay, momentum or amsgrad) update the
stacked tensors directly, with each member's learning rate, betas and step count as a column
(:class:`StackedAdam`, :class:`StackedRMSprop`: a handful of operations per tensor whatever
the number of members, the same floating-point operations as torch's, in the same order).
Anything else runs ``torch.optim`` itself over per-member views (:class:`MemberOptimizer`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.run.members import Stacked


def member_optimizer(stacked: Stacked, optimizers: list[torch.optim.Optimizer]):
    """The fastest exact optimiser for these members' own ``optimizers``."""
    kinds = {type(o) for o in optimizers}
    if len(kinds) == 1 and all(plain(o) for o in optimizers):
        if kinds == {torch.optim.Adam}:
            return StackedAdam(stacked, optimizers)
        shared = {rms_shared(o.param_groups[0]) for o in optimizers}
        if kinds == {torch.optim.RMSprop} and len(shared) == 1:
            return StackedRMSprop(stacked, optimizers)
    return MemberOptimizer(stacked, optimizers)


def plain(optimizer: torch.optim.Optimizer) -> bool:
    """One parameter group, none of the options the stacked updates leave out."""
    if len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    return not any(
        group.get(option)
        for option in (
            "weight_decay", "amsgrad", "maximize", "capturable", "differentiable", "fused",
            "momentum", "centered", "decoupled_weight_decay",
        )
    )  # fmt: skip


def rms_shared(group: dict) -> tuple:
    """What RMSprop members must share to stack (only the learning rate is per member)."""
    return group.get("alpha"), group.get("eps")


class StackedOptimizer:
    """Per-member state as stacked tensors (member m's rows), per-member settings and step
    counts (per tensor, as torch counts them: a tensor without a gradient takes no step);
    ``step(chosen)`` updates the chosen members (None: all) but the frozen ones."""

    state_names: tuple[str, ...] = ()
    neutral: dict[str, float] | None = None  # columns under which a row stays as it is

    def __init__(self, stacked: Stacked, optimizers: list[torch.optim.Optimizer]):
        self.weights = list(stacked.weights)
        self.settings = [o.param_groups[0] for o in optimizers]
        self.steps = [[0] * len(optimizers) for _ in self.weights]
        self.state = {
            name: [torch.zeros_like(w) for w in self.weights] for name in self.state_names
        }
        self.frozen: set[int] = set()
        for m, own in enumerate(optimizers):
            self._restore(m, own)

    def _restore(self, m: int, own: torch.optim.Optimizer) -> None:
        params = own.param_groups[0]["params"]
        for i, p in enumerate(params):
            state = own.state.get(p)
            if not state:
                continue
            self.steps[i][m] = int(state["step"])
            for name in self.state_names:
                self.state[name][i][m] = state[name]

    def zero_grad(self) -> None:
        for w in self.weights:
            w.grad = None

    def freeze(self, m: int) -> None:
        """Member m is no longer updated (it diverged)."""
        self.frozen.add(m)

    def export(self, m: int, own: torch.optim.Optimizer) -> None:
        """Member m's state into its own optimiser (for its per-run checkpoint), in torch's
        format: a float32 step count and the state tensors."""
        own.state.clear()
        for i, p in enumerate(own.param_groups[0]["params"]):
            if self.steps[i][m]:
                own.state[p] = {"step": torch.tensor(float(self.steps[i][m]))} | {
                    name: self.state[name][i][m].clone() for name in self.state_names
                }

    def step(self, chosen: list[int] | None = None) -> None:
        """Update the members ``chosen`` (None: all) but the frozen ones. With some members
        left out, an optimiser with ``neutral`` columns updates every row, the others' under
        columns that leave them as they are (their gradient rows are zero; nothing is frozen,
        so their state is finite): fewer operations than copying the chosen rows out and
        back, which is what the others do."""
        count = len(self.settings)
        chosen = range(count) if chosen is None else chosen
        members = [m for m in chosen if m not in self.frozen]
        if not members:
            return
        every_row = len(members) == count or (self.neutral is not None and not self.frozen)
        like = self.weights[0]
        index = None if every_row else torch.tensor(members, device=like.device)
        pick = (lambda t: t) if every_row else (lambda t: t.index_select(0, index))  # noqa: E731
        columns: dict[tuple, dict[str, Tensor]] = {}  # by step counts: one set per step, mostly
        with torch.no_grad():
            for i, w in enumerate(self.weights):
                if w.grad is None:
                    continue
                for m in members:
                    self.steps[i][m] += 1
                steps = tuple(self.steps[i][m] for m in members)
                if steps not in columns:
                    values = self.columns(members, steps, every_row)
                    columns[steps] = {
                        k: torch.tensor(v, dtype=like.dtype, device=like.device)
                        for k, v in values.items()
                    }
                shape = (-1,) + (1,) * (w.dim() - 1)  # a column over the tensor's rows
                cols = {k: c.view(shape) for k, c in columns[steps].items()}
                states = {name: pick(self.state[name][i]) for name in self.state_names}
                weight = pick(w.detach())
                self.update(weight, pick(w.grad), states, cols)
                if not every_row:  # the chosen rows were copies: back into the stack
                    w.detach().index_copy_(0, index, weight)
                    for name in self.state_names:
                        self.state[name][i].index_copy_(0, index, states[name])

    def columns(self, members: list[int], steps: tuple[int, ...], every_row: bool) -> dict:
        """:meth:`scalars` of the ``members`` updated; with ``every_row``, over all members,
        ``neutral`` for those left out."""
        values = self.scalars(members, steps)
        if not every_row or len(members) == len(self.settings):
            return values
        rows = {m: r for r, m in enumerate(members)}
        return {
            k: [v[rows[m]] if m in rows else self.neutral[k] for m in range(len(self.settings))]
            for k, v in values.items()
        }

    def scalars(self, members: list[int], steps: tuple[int, ...]) -> dict[str, list[float]]:
        """The per-member scalars of this update (``steps``: each member's step count, this
        step included), by name."""
        raise NotImplementedError

    def update(self, weight: Tensor, grad: Tensor, states: dict, cols: dict) -> None:
        """The chosen members' update of one stacked tensor, in place, with the columns of
        :meth:`scalars`."""
        raise NotImplementedError


class StackedAdam(StackedOptimizer):
    """``torch.optim.Adam``'s update (``_single_tensor_adam``/``_multi_tensor_adam`` without
    weight decay): the same operations, each member's scalars a column."""

    state_names = ("exp_avg", "exp_avg_sq")
    neutral = {  # lerp by 0, times 1, plus 0, then 0 / (√v + 1): the row is unchanged
        "one_minus_b1": 0.0, "b2": 1.0, "one_minus_b2": 0.0, "step_size": 0.0,
        "bias2_sqrt": 1.0, "eps": 1.0,
    }  # fmt: skip

    def scalars(self, members, steps):
        settings = [self.settings[m] for m in members]
        b1 = [g["betas"][0] for g in settings]
        b2 = [g["betas"][1] for g in settings]
        return {
            "one_minus_b1": [1 - b for b in b1],
            "b2": b2,
            "one_minus_b2": [1 - b for b in b2],
            "step_size": [
                (g["lr"] / (1 - beta1**t)) * -1
                for g, beta1, t in zip(settings, b1, steps, strict=True)
            ],
            "bias2_sqrt": [(1 - beta2**t) ** 0.5 for beta2, t in zip(b2, steps, strict=True)],
            "eps": [g["eps"] for g in settings],
        }

    def update(self, weight, grad, states, cols) -> None:
        exp_avg, exp_avg_sq = states["exp_avg"], states["exp_avg_sq"]
        exp_avg.lerp_(grad, cols["one_minus_b1"])
        exp_avg_sq.mul_(cols["b2"])
        exp_avg_sq.addcmul_(grad * cols["one_minus_b2"], grad)
        denom = exp_avg_sq.sqrt().div_(cols["bias2_sqrt"]).add_(cols["eps"])
        weight.addcdiv_(exp_avg * cols["step_size"], denom)


class StackedRMSprop(StackedOptimizer):
    """``torch.optim.RMSprop``'s update (no momentum, not centred): members share alpha and
    eps; each has its own learning rate."""

    state_names = ("square_avg",)

    def scalars(self, members, steps):
        return {"minus_lr": [-self.settings[m]["lr"] for m in members]}

    def update(self, weight, grad, states, cols) -> None:
        alpha, eps = rms_shared(self.settings[0])  # the same for every member
        square_avg = states["square_avg"]
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        avg = square_avg.sqrt().add_(eps)
        weight.addcdiv_(grad * cols["minus_lr"], avg)


class MemberOptimizer:
    """The members' own ``torch.optim`` optimisers as one: parameters that are views of the
    stacked tensors (member m's rows), in one parameter group per distinct setting (learning
    rate, betas), each member's state restored; ``step`` is each member's own update, with
    the ``foreach`` kernels (the same numbers as one optimiser per run)."""

    def __init__(self, stacked: Stacked, optimizers: list[torch.optim.Optimizer]):
        self.stacked = list(stacked.weights)
        self.params = [
            [torch.nn.Parameter(w.data[m], requires_grad=True) for w in self.stacked]
            for m in range(len(optimizers))
        ]
        groups: dict[str, dict] = {}
        for params, own in zip(self.params, optimizers, strict=True):
            settings = {k: v for k, v in own.param_groups[0].items() if k != "params"}
            settings["foreach"] = True
            group = groups.setdefault(repr(sorted(settings.items())), {"params": []} | settings)
            group["params"] += params
        self.optimizer = type(optimizers[0])(list(groups.values()))
        for params, own in zip(self.params, optimizers, strict=True):
            for p, state in zip(params, own_states(own), strict=True):
                if state:
                    self.optimizer.state[p] = state

    def zero_grad(self) -> None:
        for w in self.stacked:
            w.grad = None

    def step(self, chosen: list[int] | None = None) -> None:
        """Each member's update (only the ``chosen`` ones': the others have no gradient, so
        ``torch.optim`` leaves their weights and state as they are)."""
        for m, params in enumerate(self.params):
            live = chosen is None or m in chosen
            for p, w in zip(params, self.stacked, strict=True):
                p.grad = w.grad[m] if live and w.grad is not None else None
        self.optimizer.step()

    def freeze(self, m: int) -> None:
        """Member m's parameters are no longer updated (it diverged)."""
        frozen = {id(p) for p in self.params[m]}
        for group in self.optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in frozen]

    def export(self, m: int, own: torch.optim.Optimizer) -> None:
        """Member m's state into its own optimiser (for its per-run checkpoint)."""
        own.state.clear()
        for p, mine in zip(own.param_groups[0]["params"], self.params[m], strict=True):
            if mine in self.optimizer.state:
                own.state[p] = {k: v.clone() for k, v in self.optimizer.state[mine].items()}


def own_states(optimizer: torch.optim.Optimizer) -> list[dict]:
    return [dict(optimizer.state.get(p, {})) for p in optimizer.param_groups[0]["params"]]
