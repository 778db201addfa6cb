"""The inference server: vLLM's OpenAI-compatible API (Kubernetes only)."""

from __future__ import annotations

from services.components.base import (
    NOT_LOCAL,
    STR,
    Capability,
    Component,
    HealthCheck,
    KubeWorkload,
    Parameter,
    Target,
    resources,
)

PORT = 8000


class InferenceServer(Component):
    code = "inference-server"
    name = "Inference server"
    capabilities = (Capability.INFERENCE,)
    default_version = "1.0"
    description = "Serves models over HTTP (OpenAI-compatible API)."
    parameters = (
        Parameter("model", STR, "Qwen/Qwen2.5-0.5B-Instruct", "Model to serve."),
        *resources(cpu=4, memory_gb=16, gpus=1, storage_gb=50),
    )
    ports = (PORT,)
    min_gpus = 1
    image = "vllm/vllm-openai:v0.9.1"
    local_unavailable = (
        f"Inference server: {NOT_LOCAL} (it needs vLLM and a GPU container runtime; deploy "
        "it on a Kubernetes infrastructure)."
    )
    health = HealthCheck("/health", PORT)

    def kubernetes(self, target: Target) -> KubeWorkload:
        container = {
            "args": ["--model", str(target.parameters.get("model")), "--port", str(PORT)],
            "ports": [{"name": "http", "containerPort": PORT}],
        }
        # The claim holds the downloaded weights.
        return KubeWorkload(container, data_path="/root/.cache/huggingface")
