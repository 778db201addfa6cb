"""MinIO: an S3-compatible object store (Kubernetes only)."""

from __future__ import annotations

from services.components.base import (
    NOT_LOCAL,
    Capability,
    Component,
    HealthCheck,
    KubeWorkload,
    Target,
    resources,
    secret_env,
)

S3_PORT = 9000


class MinIO(Component):
    code = "minio"
    name = "MinIO"
    capabilities = (Capability.OBJECT_STORE,)
    default_version = "RELEASE.2025-04-22T22-12-26Z"
    description = "S3-compatible object store."
    parameters = resources(cpu=1, memory_gb=2, storage_gb=50)
    ports = (S3_PORT, 9001)
    image = "quay.io/minio/minio:{version}"
    local_unavailable = f"MinIO: {NOT_LOCAL} (the server is a Go binary, not a Python package)."
    secret_key = "token"
    health = HealthCheck("/minio/health/ready", S3_PORT)

    def kubernetes(self, target: Target) -> KubeWorkload:
        container = {
            "args": ["server", "/data", "--console-address", ":9001"],
            "env": [
                {"name": "MINIO_ROOT_USER", "value": "admin"},
                secret_env(target, "MINIO_ROOT_PASSWORD", self.secret_key),
            ],
            "ports": [
                {"name": "s3", "containerPort": S3_PORT},
                {"name": "console", "containerPort": 9001},
            ],
        }
        return KubeWorkload(container)
