"""The component catalog: software a services profile can be assembled from.

Each component names the capabilities it provides, its default version, its typed
parameters (with defaults and validation), and what it needs: ports, GPUs, storage, other
capabilities (`requires`) and capabilities that must come *before* it in a profile
(`after`, e.g. MLflow before the pipelines that log to it).

How a component is realised per driver lives in `services.backends` (Kubernetes manifests
in `services/backends/kubernetes.py`, supervised processes in `services/backends/local.py`);
this module is plain data, so the admin forms, the compatibility checks and the turnkey
profiles are all validated against the same declarations. `local_package` names the Python
module the local driver runs the component from; `local_unavailable` says why a component
cannot run on the local driver at all.
"""

from __future__ import annotations

import importlib.util
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


INT, STR, BOOL, CHOICE = "int", "str", "bool", "choice"
SERVICES_EXTRA = "pip install 'gpu-paas-portal[services]'"


@dataclass(frozen=True)
class Parameter:
    """One typed parameter of a component; `parse` turns form text into the stored value."""

    name: str
    kind: str
    default: object
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    def parse(self, raw) -> object:
        """The typed value of `raw` (text from a form, or a stored value); ValueError if bad."""
        if self.kind == INT:
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise ValueError(f"{self.name} must be a whole number, not “{raw}”.") from None
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"{self.name} must be at least {self.minimum}.")
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"{self.name} must be at most {self.maximum}.")
            return value
        if self.kind == BOOL:
            text = str(raw).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off", ""):
                return False
            raise ValueError(f"{self.name} must be true or false, not “{raw}”.")
        if self.kind == CHOICE:
            if str(raw) not in self.choices:
                raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}.")
            return str(raw)
        return str(raw)


def _resources(cpu: int = 1, memory_gb: int = 2, gpus: int = 0, storage_gb: int = 0):
    """The Kubernetes sizing parameters every component has."""
    params = [
        Parameter("cpu", INT, cpu, "vCPUs of the component's pod (Kubernetes).", minimum=1),
        Parameter("memory_gb", INT, memory_gb, "Memory of the pod in GiB (Kubernetes).", 1),
        Parameter("gpus", INT, gpus, "GPUs of the pod (Kubernetes).", minimum=0, maximum=16),
    ]
    if storage_gb:
        params.append(
            Parameter("storage_gb", INT, storage_gb, "Persistent volume size in GiB.", minimum=1)
        )
    return tuple(params)


@dataclass(frozen=True)
class Component:
    code: str
    name: str
    capabilities: tuple[str, ...]
    default_version: str
    description: str
    parameters: tuple[Parameter, ...] = ()
    ports: tuple[int, ...] = ()  # container ports (Kubernetes); local ports are chosen free
    min_gpus: int = 0  # GPUs the compute profile must offer for it to be useful
    requires: tuple[str, ...] = ()  # capabilities the profile must also provide
    after: tuple[str, ...] = ()  # capabilities that must come earlier in the profile
    image: str = ""  # container image (Kubernetes), `{version}` filled in
    local_package: str = ""  # Python module the local driver runs it from
    local_unavailable: str = ""  # why it cannot run on the local driver at all

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.parameters}

    def resolve(self, given: dict) -> dict:
        """Defaults overlaid with `given`, typed; ValueError naming the first bad parameter."""
        values = self.defaults()
        for name, raw in (given or {}).items():
            found = self.parameter(name)
            if found is None:
                known = ", ".join(p.name for p in self.parameters) or "none"
                raise ValueError(f"{self.name} has no parameter “{name}” (known: {known}).")
            values[name] = found.parse(raw)
        return values

    def storage_gb(self, given: dict) -> int:
        return int(self.resolve(given).get("storage_gb", 0))

    def gpus(self, given: dict) -> int:
        return max(int(self.resolve(given).get("gpus", 0)), self.min_gpus)

    def local_availability(self) -> tuple[bool, str]:
        """(True, "") when the local driver can run it here, else (False, why)."""
        if self.local_unavailable:
            return False, self.local_unavailable
        if self.local_package and importlib.util.find_spec(self.local_package) is None:
            return False, (f"{self.name} is not installed on this portal host: {SERVICES_EXTRA}")
        return True, ""


NOT_LOCAL = "not available on local infrastructure"

COMPONENTS: dict[str, Component] = {
    c.code: c
    for c in [
        Component(
            "jupyterlab",
            "JupyterLab",
            (Capability.NOTEBOOK,),
            "4.4",
            "Notebook server with the workspace's GPUs and storage.",
            parameters=(
                Parameter("port", INT, 0, "Local port; 0 picks a free one.", (), 0, 65535),
                Parameter("default_url", STR, "/lab", "Page the link opens."),
                *_resources(cpu=2, memory_gb=8, storage_gb=10),
            ),
            ports=(8888,),
            image="quay.io/jupyter/pytorch-notebook:lab-{version}",
            local_package="jupyterlab",
        ),
        Component(
            "mlflow",
            "MLflow",
            (Capability.MODEL_REGISTRY, Capability.EXPERIMENT_TRACKING),
            "3.1",
            "Tracking server and model registry.",
            parameters=(
                Parameter("port", INT, 0, "Local port; 0 picks a free one.", (), 0, 65535),
                Parameter("workers", INT, 1, "Server worker processes.", (), 1, 16),
                Parameter(
                    "artifact_root",
                    STR,
                    "",
                    "Where artifacts go, e.g. s3://bucket/path; empty: the server's own storage.",
                ),
                *_resources(cpu=1, memory_gb=2, storage_gb=10),
            ),
            ports=(5000,),
            image="ghcr.io/mlflow/mlflow:v{version}.0",
            local_package="mlflow",
        ),
        Component(
            "ray",
            "Ray",
            (Capability.DISTRIBUTED_COMPUTE,),
            "2.47",
            "Ray head (and workers on multi-node profiles).",
            parameters=(
                Parameter("port", INT, 0, "Local GCS port; 0 picks a free one.", (), 0, 65535),
                Parameter("num_cpus", INT, 0, "CPUs Ray may use; 0 detects them.", (), 0, 1024),
                Parameter("workers", INT, 0, "Worker pods besides the head (Kubernetes).", 0),
                *_resources(cpu=2, memory_gb=8),
            ),
            ports=(6379, 8265, 10001),
            image="rayproject/ray:{version}.0",
            local_package="ray",
        ),
        Component(
            "training-runner",
            "Training job runner",
            (Capability.TRAINING,),
            "1.0",
            "Runs distributed PyTorch training (torchrun) on the workspace's GPUs.",
            parameters=(
                Parameter("framework", CHOICE, "pytorch", "Training framework.", ("pytorch",)),
                Parameter("max_parallel", INT, 1, "Jobs run at the same time.", (), 1, 16),
                *_resources(cpu=4, memory_gb=16, gpus=1),
            ),
            ports=(8080,),
            min_gpus=1,
            image="nvcr.io/nvidia/pytorch:25.04-py3",
        ),
        Component(
            "inference-server",
            "Inference server",
            (Capability.INFERENCE,),
            "1.0",
            "Serves models over HTTP (OpenAI-compatible API).",
            parameters=(
                Parameter("model", STR, "Qwen/Qwen2.5-0.5B-Instruct", "Model to serve."),
                *_resources(cpu=4, memory_gb=16, gpus=1, storage_gb=50),
            ),
            ports=(8000,),
            min_gpus=1,
            image="vllm/vllm-openai:v0.9.1",
            local_unavailable=f"Inference server: {NOT_LOCAL} (it needs vLLM and a GPU "
            "container runtime; deploy it on a Kubernetes infrastructure).",
        ),
        Component(
            "job-queue",
            "Jobs queue",
            (Capability.JOBS,),
            "1.0",
            "Queue that runs submitted batch jobs on the workspace.",
            parameters=(
                Parameter("port", INT, 0, "Local port; 0 picks a free one.", (), 0, 65535),
                Parameter("max_parallel", INT, 2, "Jobs run at the same time.", (), 1, 64),
                *_resources(cpu=1, memory_gb=2, storage_gb=5),
            ),
            ports=(8080,),
            image="python:3.11-slim",
        ),
        Component(
            "kubeflow-pipelines",
            "Kubeflow Pipelines",
            (Capability.PIPELINES,),
            "2.5",
            "Pipeline orchestration (Kubernetes only).",
            parameters=_resources(cpu=1, memory_gb=4, storage_gb=20),
            ports=(8888,),
            requires=(Capability.OBJECT_STORE,),
            after=(Capability.MODEL_REGISTRY, Capability.EXPERIMENT_TRACKING),
            image="ghcr.io/kubeflow/kfp-api-server:{version}.0",
            local_unavailable=f"Kubeflow Pipelines: {NOT_LOCAL} (it is a set of Kubernetes "
            "controllers).",
        ),
        Component(
            "feast",
            "Feast",
            (Capability.FEATURE_STORE,),
            "0.49",
            "Feature store.",
            parameters=_resources(cpu=1, memory_gb=2, storage_gb=5),
            ports=(6566,),
            image="feastdev/feature-server:{version}.0",
            local_unavailable=f"Feast: {NOT_LOCAL} (its feature server is not installed on "
            "this portal host; deploy it on a Kubernetes infrastructure).",
        ),
        Component(
            "minio",
            "MinIO",
            (Capability.OBJECT_STORE,),
            "RELEASE.2025-04-22T22-12-26Z",
            "S3-compatible object store.",
            parameters=_resources(cpu=1, memory_gb=2, storage_gb=50),
            ports=(9000, 9001),
            image="quay.io/minio/minio:{version}",
            local_unavailable=f"MinIO: {NOT_LOCAL} (the server is a Go binary, not a Python "
            "package).",
        ),
        Component(
            "gcs",
            "Google Cloud Storage bucket",
            (Capability.OBJECT_STORE,),
            "v1",
            "Binds an existing GCS bucket into the workspace.",
            parameters=(Parameter("bucket", STR, "", "Existing bucket name."),),
            local_unavailable=f"Google Cloud Storage: {NOT_LOCAL} (it binds a bucket through "
            "Kubernetes workload identity).",
        ),
        Component(
            "oauth2-proxy",
            "SSO proxy (Okta)",
            (Capability.AUTHENTICATION,),
            "7.9",
            "Puts the stack's web UIs behind the organisation's Okta SSO.",
            parameters=(
                Parameter("provider", CHOICE, "okta", "Identity provider.", ("okta", "oidc")),
                Parameter("issuer_url", STR, "", "OIDC issuer, e.g. https://org.okta.com/..."),
                *_resources(cpu=1, memory_gb=1),
            ),
            ports=(4180,),
            image="quay.io/oauth2-proxy/oauth2-proxy:v{version}.0",
            local_unavailable=f"SSO proxy: {NOT_LOCAL} (local services listen on 127.0.0.1 "
            "only and are reached through the portal host).",
        ),
    ]
}


def choices() -> list[tuple[str, str]]:
    return [(c.code, c.name) for c in COMPONENTS.values()]


def component(code: str) -> Component | None:
    return COMPONENTS.get(code)


def check_stack(items: list[tuple[str, str, dict]], parameters: bool = True) -> list[str]:
    """Problems of a profile's (capability, component code, parameters) rows, in order.

    Each parameter set must resolve; each `requires` capability must be provided somewhere;
    each `after` capability, when present, must come earlier (MLflow before pipelines).
    """
    errors: list[str] = []
    positions: dict[str, int] = {}
    for index, (capability, code, _) in enumerate(items):
        found = component(code)
        if found:
            for provided in {capability, *found.capabilities}:
                positions.setdefault(provided, index)
    for index, (_, code, given) in enumerate(items):
        found = component(code)
        if found is None:
            errors.append(f"Unknown component “{code}”.")
            continue
        try:
            if parameters:
                found.resolve(given)
        except ValueError as error:
            errors.append(str(error))
        for needed in found.requires:
            if needed not in positions:
                errors.append(
                    f"{found.name} needs a component providing {Capability(needed).label}."
                )
        for earlier in found.after:
            if earlier in positions and positions[earlier] > index:
                errors.append(
                    f"{found.name} must come after the component providing "
                    f"{Capability(earlier).label}; move it down."
                )
    return errors
