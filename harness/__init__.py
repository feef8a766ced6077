"""harness: compare Lipschitz strategies for GAN critics, measured the same way every time.

The public face: ``harness.hookimpl`` marks a plugin's hook implementations, ``harness.train``
trains one run, ``harness.score`` scores samples made elsewhere, ``harness.parts`` holds the
part interfaces and ``harness.testing`` the conformance kit. The layers behind them are laid
out in docs/architecture.md.
"""

from harness.core.hookspecs import hookimpl
from harness.core.version import __version__


def train(*args, **kwargs):
    """Train one (strategy, seed) run; see :func:`harness.run.trainer.train`."""
    from harness.run.trainer import train as _train

    return _train(*args, **kwargs)


def score(*args, **kwargs) -> dict[str, float]:
    """Score samples made elsewhere with a run's metrics; see :func:`harness.run.scoring.score`."""
    from harness.run.scoring import score as _score

    return _score(*args, **kwargs)


__all__ = ["__version__", "hookimpl", "score", "train"]
