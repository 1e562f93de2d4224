"""MLflow: tracking, plots, the local store, the model registry and promotion, serving.

MLflow 3 sends usage telemetry to its maintainers unless told not to; the engine's runs carry a team's prompts
and data, so it is off unless the user's environment turns it on (MLFLOW_DISABLE_TELEMETRY=false)."""
import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
