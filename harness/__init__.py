"""harness: compare Lipschitz strategies for GAN critics, measured the same way every time."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("harness")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

hookimpl = pluggy.HookimplMarker("harness")


def train(*args, **kwargs):
    """Train one (strategy, seed) run; see :func:`harness.trainer.train`."""
    from harness.trainer import train as _train

    return _train(*args, **kwargs)


def score(*args, **kwargs) -> dict[str, float]:
    """Score samples made elsewhere with a run's metrics; see :func:`harness.scoring.score`."""
    from harness.scoring import score as _score

    return _score(*args, **kwargs)


__all__ = ["__version__", "hookimpl", "score", "train"]
