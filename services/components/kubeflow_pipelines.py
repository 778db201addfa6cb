"""Kubeflow Pipelines: its API server, wired to the stack's object store and MLflow.

A full installation also needs its cluster-scoped manifests (CRDs, Argo), which an
administrator installs once per cluster.
"""

from __future__ import annotations

from services.components.base import (
    NOT_LOCAL,
    Capability,
    Component,
    KubeWorkload,
    Target,
    resources,
)
from services.components.minio import S3_PORT, MinIO
from services.components.mlflow import MLflow


class KubeflowPipelines(Component):
    code = "kubeflow-pipelines"
    name = "Kubeflow Pipelines"
    capabilities = (Capability.PIPELINES,)
    default_version = "2.5"
    description = "Pipeline orchestration (Kubernetes only)."
    parameters = resources(cpu=1, memory_gb=4, storage_gb=20)
    ports = (8888,)
    requires = (Capability.OBJECT_STORE,)
    after = (Capability.MODEL_REGISTRY, Capability.EXPERIMENT_TRACKING)
    image = "ghcr.io/kubeflow/kfp-api-server:{version}.0"
    local_unavailable = f"Kubeflow Pipelines: {NOT_LOCAL} (it is a set of Kubernetes controllers)."

    def kubernetes(self, target: Target) -> KubeWorkload:
        container = {
            "env": [
                {"name": "OBJECTSTORECONFIG_HOST", "value": target.peer(MinIO)},
                {"name": "OBJECTSTORECONFIG_PORT", "value": str(S3_PORT)},
                {"name": "OBJECTSTORECONFIG_SECURE", "value": "false"},
                {"name": "OBJECTSTORECONFIG_BUCKETNAME", "value": "mlpipeline"},
                {"name": "MLFLOW_TRACKING_URI", "value": MLflow.tracking_uri(target.peer(MLflow))},
            ],
            "ports": [
                {"name": "http", "containerPort": 8888},
                {"name": "grpc", "containerPort": 8887},
            ],
        }
        return KubeWorkload(container, cluster_api=True)
