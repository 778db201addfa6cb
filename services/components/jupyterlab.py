"""JupyterLab: the notebook server, with the workspace's GPUs and storage."""

from __future__ import annotations

import os

from services.components.base import (
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
    secret_env,
)

PORT = 8888


class JupyterLab(Component):
    code = "jupyterlab"
    name = "JupyterLab"
    capabilities = (Capability.NOTEBOOK,)
    default_version = "4.4"
    description = "Notebook server with the workspace's GPUs and storage."
    parameters = (
        local_port(),
        Parameter("default_url", STR, "/lab", "Page the link opens."),
        *resources(cpu=2, memory_gb=8, storage_gb=10),
    )
    ports = (PORT,)
    image = "quay.io/jupyter/pytorch-notebook:lab-{version}"
    local_packages = ("jupyterlab",)
    secret_key = "token"
    health = HealthCheck("/api", PORT)
    start_timeout = 90

    def local_process(self, target: LocalTarget) -> LocalProcess:
        argv = [
            target.executable("jupyter"),
            "lab",
            "--no-browser",
            "--ip",
            "127.0.0.1",
            "--port",
            str(target.port),
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={target.workdir}",
            f"--ServerApp.default_url={target.parameters.get('default_url') or '/lab'}",
        ]
        if os.geteuid() == 0:
            argv.append("--allow-root")
        # The token travels in the environment, not on the command line (ps shows that).
        env = {
            "JUPYTER_TOKEN": target.secret,
            "JUPYTER_RUNTIME_DIR": str(target.directory / "runtime"),
        }
        url = f"http://127.0.0.1:{target.port}/lab"
        return LocalProcess(argv, env, [{"name": "JupyterLab", "url": url, "token": "query"}])

    def kubernetes(self, target: Target) -> KubeWorkload:
        container = {
            "args": [
                "start-notebook.py",
                "--ServerApp.root_dir=/home/jovyan/work",
                f"--ServerApp.default_url={target.parameters.get('default_url', '/lab')}",
            ],
            "env": [secret_env(target, "JUPYTER_TOKEN", self.secret_key)],
            "ports": [{"name": "http", "containerPort": PORT}],
        }
        return KubeWorkload(container, data_path="/home/jovyan/work")

    def cluster_endpoints(self, host: str) -> list[dict]:
        # The token goes in the link's query string (the page's "Open JupyterLab").
        return [dict(entry, token="query") for entry in super().cluster_endpoints(host)]
