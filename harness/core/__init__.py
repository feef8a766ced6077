"""The plugin contract and everything that needs no torch, MLflow or pandas: the part
interfaces, the hookspecs, the registry, the suite's value types, part identity, sweep
expansion, errors and the version. Imports nothing of the layers above."""
