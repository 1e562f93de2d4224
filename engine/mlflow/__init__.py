"""MLflow: tracking, plots, the local store, the model registry and promotion, serving."""
