"""The component catalog: software a services profile can be assembled from.

One class per component (a module each, beside `base`), registered here in the order the
forms offer them. `base` says what a component declares; `services.backends` renders it.
"""

from services.components.base import (
    BOOL,
    CHOICE,
    COMPONENTS,
    INT,
    NOT_LOCAL,
    SERVICES_EXTRA,
    STR,
    Capability,
    Component,
    HealthCheck,
    KubeWorkers,
    KubeWorkload,
    LocalProcess,
    LocalTarget,
    NotRunnable,
    Parameter,
    ParameterError,
    Target,
    check_stack,
    choices,
    component,
    object_name,
    register,
    version_problem,
)
from services.components.feast import Feast
from services.components.gcs import GoogleCloudStorage
from services.components.inference_server import InferenceServer
from services.components.job_queue import JobQueue
from services.components.jupyterlab import JupyterLab
from services.components.kubeflow_pipelines import KubeflowPipelines
from services.components.minio import MinIO
from services.components.mlflow import MLflow
from services.components.oauth2_proxy import OAuth2Proxy
from services.components.ray import Ray
from services.components.training_runner import TrainingRunner

register(
    JupyterLab,
    MLflow,
    Ray,
    TrainingRunner,
    InferenceServer,
    JobQueue,
    KubeflowPipelines,
    Feast,
    MinIO,
    GoogleCloudStorage,
    OAuth2Proxy,
)

__all__ = [
    "BOOL",
    "CHOICE",
    "COMPONENTS",
    "INT",
    "NOT_LOCAL",
    "SERVICES_EXTRA",
    "STR",
    "Capability",
    "Component",
    "Feast",
    "GoogleCloudStorage",
    "HealthCheck",
    "InferenceServer",
    "JobQueue",
    "JupyterLab",
    "KubeWorkers",
    "KubeWorkload",
    "KubeflowPipelines",
    "LocalProcess",
    "LocalTarget",
    "MLflow",
    "MinIO",
    "NotRunnable",
    "OAuth2Proxy",
    "Parameter",
    "ParameterError",
    "Ray",
    "Target",
    "TrainingRunner",
    "check_stack",
    "choices",
    "component",
    "object_name",
    "version_problem",
]
