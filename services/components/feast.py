"""Feast: the feature store's server (Kubernetes only)."""

from __future__ import annotations

from services.components.base import (
    NOT_LOCAL,
    Capability,
    Component,
    KubeWorkload,
    Target,
    resources,
)

PORT = 6566


class Feast(Component):
    code = "feast"
    name = "Feast"
    capabilities = (Capability.FEATURE_STORE,)
    default_version = "0.49"
    description = "Feature store."
    parameters = resources(cpu=1, memory_gb=2, storage_gb=5)
    ports = (PORT,)
    image = "feastdev/feature-server:{version}.0"
    local_unavailable = (
        f"Feast: {NOT_LOCAL} (its feature server is not installed on this portal host; "
        "deploy it on a Kubernetes infrastructure)."
    )

    def kubernetes(self, target: Target) -> KubeWorkload:
        container = {
            "command": ["feast", "serve", "--host", "0.0.0.0", "--port", str(PORT)],
            "workingDir": "/feature_repo",
            "ports": [{"name": "http", "containerPort": PORT}],
        }
        feature_store = (
            f"project: {target.workspace.replace('-', '_')}\n"
            "registry: /data/registry.db\n"
            "provider: local\n"
            "online_store:\n  type: sqlite\n  path: /data/online.db\n"
            "entity_key_serialization_version: 3\n"
        )
        return KubeWorkload(
            container,
            config_files={"feature_store.yaml": feature_store},
            config_path="/feature_repo",
        )
