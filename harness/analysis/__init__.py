"""Reading stored runs back: comparison tables and verdicts, robustness over sweep settings,
plotting helpers, figures and the HTML report. Imports the layers below, never MLflow (the
store answers its questions)."""
