"""The registered model's code ("models from code"): MLflow copies this file into the model and runs it
at load time; the model itself lives in engine.serving, which the serving environment imports."""
from mlflow.models import set_model

from engine.serving import ConfigModel

set_model(ConfigModel())
