"""The Optuna search over methods and loss weights."""
