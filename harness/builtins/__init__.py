"""The built-in parts, registered through the ``harness`` entry-point group exactly as a
third-party package's are. Each module imports the contract (:mod:`harness.core`) and, where it
measures, the evaluation layer; torch networks live in ``*_nets``/``*_layers`` modules that
``build()``/``wrap_critic()`` import, so listing and validating stay torch-free."""
