"""MLflow: the tracking server and model registry."""

from __future__ import annotations

from services.components.base import (
    INT,
    STR,
    Capability,
    Component,
    HealthCheck,
    KubeWorkload,
    LocalProcess,
    LocalTarget,
    Parameter,
    Target,
    local_port,
    resources,
)

PORT = 5000


class MLflow(Component):
    code = "mlflow"
    name = "MLflow"
    capabilities = (Capability.MODEL_REGISTRY, Capability.EXPERIMENT_TRACKING)
    default_version = "3.1"
    description = "Tracking server and model registry."
    parameters = (
        local_port(),
        Parameter("workers", INT, 1, "Server worker processes.", (), 1, 16),
        Parameter(
            "artifact_root",
            STR,
            "",
            "Where artifacts go, e.g. s3://bucket/path; empty: the server's own storage.",
        ),
        *resources(cpu=1, memory_gb=2, storage_gb=10),
    )
    ports = (PORT,)
    image = "ghcr.io/mlflow/mlflow:v{version}.0"
    local_packages = ("mlflow",)
    health = HealthCheck("/health", PORT)
    start_timeout = 120

    def local_process(self, target: LocalTarget) -> LocalProcess:
        params, directory = target.parameters, target.directory
        argv = [
            target.executable("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(target.port),
            "--workers",
            str(params.get("workers", 1)),
            "--backend-store-uri",
            f"sqlite:///{directory / 'mlflow.db'}",
            "--default-artifact-root",
            str(params.get("artifact_root") or directory / "artifacts"),
        ]
        base = f"http://127.0.0.1:{target.port}"
        endpoints = [
            {"name": "MLflow UI", "url": f"{base}/"},
            {"name": "MLFLOW_TRACKING_URI", "url": base},
        ]
        return LocalProcess(argv, endpoints=endpoints)

    def kubernetes(self, target: Target) -> KubeWorkload:
        params = target.parameters
        container = {
            "command": ["mlflow", "server", "--host", "0.0.0.0", "--port", str(PORT)],
            "args": [
                "--workers",
                str(params.get("workers", 1)),
                "--backend-store-uri",
                "sqlite:////data/mlflow.db",
                "--default-artifact-root",
                str(params.get("artifact_root") or "/data/artifacts"),
            ],
            "ports": [{"name": "http", "containerPort": PORT}],
        }
        return KubeWorkload(container)

    @staticmethod
    def tracking_uri(host: str) -> str:
        """The tracking URI of its Service `host` (for components that log to it)."""
        return f"http://{host}:{PORT}"
