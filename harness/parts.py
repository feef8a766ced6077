"""The part interfaces plugins implement: ``from harness.parts import Constraint``. The public
path of :mod:`harness.core.parts`, where the contract lives (every name of its ``__all__``)."""

from harness.core.parts import *  # noqa: F403
from harness.core.parts import __all__  # noqa: F401
