"""The plugin registry: ``from harness.registry import Registry`` (plugin tests, the scaffold's
generated tests). The public path of :mod:`harness.core.registry`."""

from harness.core.registry import PartInfo, Registry, validate_params

__all__ = ["PartInfo", "Registry", "validate_params"]
