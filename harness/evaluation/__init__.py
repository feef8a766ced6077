"""What an evaluation point measures: the frozen MNIST evaluator and its weights, the metric
computations (coverage, FID/KID/PR, Lipschitz diagnostics, transport, stability), the
evaluation context a metric sees, and what is rendered at an evaluation (sample grids, value
surfaces). Imports only the core."""
