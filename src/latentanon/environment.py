"""The environment variables the project reads or sets, named once.

Below every layer: the CLI, the Kubeflow components, tracking and tuning all import the names
from here.
"""

from __future__ import annotations

# Set by every entry point unless the user set them: nothing phones home, no hub is asked.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
}
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
RUN_ID_ENV = "MLFLOW_RUN_ID"  # injected by the Kubeflow MLflow integration
TUNE_STORAGE_ENV = "LATENTANON_TUNE_STORAGE"
