"""A Google Cloud Storage bucket bound into the workspace (Kubernetes only): a binding, no
pods of its own."""

from __future__ import annotations

from services.components.base import (
    NOT_LOCAL,
    STR,
    Capability,
    Component,
    KubeWorkload,
    Parameter,
    Target,
)


class GoogleCloudStorage(Component):
    code = "gcs"
    name = "Google Cloud Storage bucket"
    capabilities = (Capability.OBJECT_STORE,)
    default_version = "v1"
    description = "Binds an existing GCS bucket into the workspace."
    parameters = (Parameter("bucket", STR, "", "Existing bucket name."),)
    local_unavailable = (
        f"Google Cloud Storage: {NOT_LOCAL} (it binds a bucket through Kubernetes workload "
        "identity)."
    )

    def kubernetes(self, target: Target) -> KubeWorkload:
        bucket = str(target.parameters.get("bucket", ""))
        return KubeWorkload(config_files={"bucket": bucket}, pods=False)
