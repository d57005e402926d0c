"""MLflow runs, the model registry and the promotion gate."""
