"""The component catalog: software a services profile can be assembled from.

Each component names the capability it provides and its default version. How a component is
realised on each infrastructure driver lives with the drivers; this module is what the admin
forms and the turnkey profiles are validated against.
"""

from dataclasses import dataclass

from django.db import models


class Capability(models.TextChoices):
    NOTEBOOK = "notebook", "Notebook"
    TRAINING = "training", "Training"
    INFERENCE = "inference", "Inference"
    PIPELINES = "pipelines", "Pipelines"
    MODEL_REGISTRY = "model_registry", "Model registry"
    EXPERIMENT_TRACKING = "experiment_tracking", "Experiment tracking"
    FEATURE_STORE = "feature_store", "Feature store"
    OBJECT_STORE = "object_store", "Object store"
    AUTHENTICATION = "authentication", "Authentication"
    DISTRIBUTED_COMPUTE = "distributed_compute", "Distributed compute"
    JOBS = "jobs", "Jobs"


@dataclass(frozen=True)
class Component:
    code: str
    name: str
    capabilities: tuple[str, ...]
    default_version: str
    description: str


COMPONENTS: dict[str, Component] = {
    c.code: c
    for c in [
        Component(
            "jupyterlab",
            "JupyterLab",
            (Capability.NOTEBOOK,),
            "4.4",
            "Notebook server with the workspace's GPUs and storage.",
        ),
        Component(
            "mlflow",
            "MLflow",
            (Capability.MODEL_REGISTRY, Capability.EXPERIMENT_TRACKING),
            "3.1",
            "Tracking server and model registry.",
        ),
        Component(
            "ray",
            "Ray",
            (Capability.DISTRIBUTED_COMPUTE,),
            "2.47",
            "Ray head (and workers on multi-node profiles).",
        ),
        Component(
            "training-runner",
            "Training job runner",
            (Capability.TRAINING,),
            "1.0",
            "Runs distributed PyTorch training (torchrun) on the workspace's GPUs.",
        ),
        Component(
            "inference-server",
            "Inference server",
            (Capability.INFERENCE,),
            "1.0",
            "Serves models over HTTP (OpenAI-compatible API).",
        ),
        Component(
            "job-queue",
            "Jobs queue",
            (Capability.JOBS,),
            "1.0",
            "Queue that runs submitted batch jobs on the workspace.",
        ),
        Component(
            "kubeflow-pipelines",
            "Kubeflow Pipelines",
            (Capability.PIPELINES,),
            "2.5",
            "Pipeline orchestration (Kubernetes only).",
        ),
        Component(
            "feast",
            "Feast",
            (Capability.FEATURE_STORE,),
            "0.49",
            "Feature store.",
        ),
        Component(
            "minio",
            "MinIO",
            (Capability.OBJECT_STORE,),
            "RELEASE.2025-04-22T22-12-26Z",
            "S3-compatible object store.",
        ),
        Component(
            "gcs",
            "Google Cloud Storage bucket",
            (Capability.OBJECT_STORE,),
            "v1",
            "Binds an existing GCS bucket into the workspace.",
        ),
        Component(
            "oauth2-proxy",
            "SSO proxy (Okta)",
            (Capability.AUTHENTICATION,),
            "7.9",
            "Puts the stack's web UIs behind the organisation's Okta SSO.",
        ),
    ]
}


def choices() -> list[tuple[str, str]]:
    return [(c.code, c.name) for c in COMPONENTS.values()]


def component(code: str) -> Component | None:
    return COMPONENTS.get(code)
