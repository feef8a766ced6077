"""The plugin contract: one ``register_*`` hook per kind of part.

Each hook receives a ``register(name, part)`` callback, so one module can add many parts and
the harness owns naming, type checks and collision errors (the pattern of simonw/llm).
"""

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("harness")
hookimpl = pluggy.HookimplMarker("harness")  # re-exported as harness.hookimpl

Register = Callable[[str, type], None]


@hookspec
def register_losses(register: Register) -> None:
    """Register loss classes (subclasses of :class:`harness.parts.Loss`).

    :param register: call ``register(name, LossClass)`` once per loss.

    Example::

        @harness.hookimpl
        def register_losses(register):
            register("least_squares", LeastSquares)
    """


@hookspec
def register_constraints(register: Register) -> None:
    """Register Lipschitz constraints (subclasses of :class:`harness.parts.Constraint`).

    :param register: call ``register(name, ConstraintClass)``; suite parameters become the
        class's keyword arguments.

    Example::

        @harness.hookimpl
        def register_constraints(register):
            register("weight_clip", WeightClip)
    """


@hookspec
def register_architectures(register: Register) -> None:
    """Register architectures (subclasses of :class:`harness.parts.Architecture`).

    :param register: call ``register(name, ArchitectureClass)``.

    Example::

        @harness.hookimpl
        def register_architectures(register):
            register("mlp", MLP)
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets (subclasses of :class:`harness.parts.Dataset`).

    :param register: call ``register(name, DatasetClass)``. A dataset whose data lives on
        disk should implement ``check(data_dir)`` so ``validate`` finds missing files.

    Example::

        @harness.hookimpl
        def register_datasets(register):
            register("ring8", Ring8)
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register metrics (subclasses of :class:`harness.parts.Metric`), selected by a suite's
    ``metrics:`` list.

    :param register: call ``register(name, MetricClass)``.

    Example::

        @harness.hookimpl
        def register_metrics(register):
            register("mode_coverage", ModeCoverage)
    """
