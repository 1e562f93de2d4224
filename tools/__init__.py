"""Maintenance scripts, run from the repo root: `python tools/build_llama.py` (standalone) and
`python -m tools.mlflow_screenshots` (imports tests.support)."""
