"""MLflow's loader for model versions registered before the engine's modules moved into packages: their
MLmodel names `engine.serving` as the pyfunc `loader_module`. New versions name `engine.mlflow.serving`."""
from .mlflow.serving import _load_pyfunc

__all__ = ["_load_pyfunc"]
