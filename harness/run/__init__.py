"""Running suites: loading and resolving suite files, the preflight build, provenance, the
trainer, the store (the only module that speaks to MLflow), locks, planning, executors and the
scoring of samples made elsewhere. Imports the core and the evaluation layer."""
