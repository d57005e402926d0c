"""MLflow auth set-up, run by the mlflow-auth-init Job as the auth app's admin (idempotent).

Two users besides the admin: the pipeline user (every task but the gate's, and the batch job) and
the gate user. Everyone authenticated reads (default_permission READ). Both may log runs in the
pipeline's experiment (EDIT); only the gate user may write the registered model (MANAGE): its
versions, tags and the @candidate/@champion aliases, i.e. the registry decisions. The model and
the experiment are created here, by the admin, so that no pipeline identity owns them (MLflow
gives a resource's creator MANAGE on it).

Environment: MLFLOW_TRACKING_URI; MLFLOW_TRACKING_USERNAME/PASSWORD (the admin);
LATENTANON_PIPELINE_USERNAME/PASSWORD; LATENTANON_GATE_USERNAME/PASSWORD;
LATENTANON_EXPERIMENT and LATENTANON_MODEL_NAME (params.yaml's tracking.experiment, model_name).
"""
import os
import sys
import time

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from mlflow.server.auth.client import AuthServiceClient

EXPERIMENT_PERMISSION = "EDIT"      # log runs, metrics, artifacts; never delete or re-permission
MODEL_PERMISSION_GATE = "MANAGE"    # the registry decisions


def wait_for(uri: str, attempts: int = 60) -> None:
    import urllib.request

    for _ in range(attempts):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
                return
        except OSError:
            print("waiting for mlflow", flush=True)
            time.sleep(3)
    sys.exit(f"{uri}: MLflow did not answer /health")


def ensure_user(auth: AuthServiceClient, username: str, password: str) -> None:
    if not username or not password:
        sys.exit(f"user {username!r}: username and password must both be set (from their Secret)")
    try:
        auth.create_user(username, password)
        print(f"created user {username}", flush=True)
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.update_user_password(username, password)  # the Secret is the source of truth
    auth.update_user_admin(username, False)


def grant(auth: AuthServiceClient, username: str, resource_type: str, resource_id: str, permission: str) -> None:
    """Set the user's permission on the resource, replacing whatever it was (re-runs converge)."""
    try:
        auth.grant_user_permission(username, resource_type, resource_id, permission)
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(username, resource_type, resource_id)
        auth.grant_user_permission(username, resource_type, resource_id, permission)
    print(f"{username}: {permission} on {resource_type} {resource_id}", flush=True)


def ensure_experiment(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def ensure_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="latentanon trained anonymization methods; the gate moves @champion")


def main(env=os.environ) -> None:
    uri = env["MLFLOW_TRACKING_URI"]
    wait_for(uri)
    auth, client = AuthServiceClient(uri), MlflowClient(tracking_uri=uri, registry_uri=uri)
    pipeline, gate = env["LATENTANON_PIPELINE_USERNAME"], env["LATENTANON_GATE_USERNAME"]
    if pipeline == gate:
        sys.exit("the pipeline and gate users must differ: only the gate may write registry decisions")
    ensure_user(auth, pipeline, env["LATENTANON_PIPELINE_PASSWORD"])
    ensure_user(auth, gate, env["LATENTANON_GATE_PASSWORD"])
    experiment_id = ensure_experiment(client, env["LATENTANON_EXPERIMENT"])
    model = env["LATENTANON_MODEL_NAME"]
    ensure_model(client, model)
    for user in (pipeline, gate):
        grant(auth, user, "experiment", experiment_id, EXPERIMENT_PERMISSION)
    grant(auth, gate, "registered_model", model, MODEL_PERMISSION_GATE)
    print("mlflow users and permissions ready", flush=True)


if __name__ == "__main__":
    main()
