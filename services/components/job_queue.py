"""The jobs queue: `jobrunner.py` (beside this module) run as a service of the workspace.

Locally it runs with the portal's interpreter; on Kubernetes the script travels in the
component's ConfigMap and runs in a plain Python image.
"""

from __future__ import annotations

import sys
from pathlib import Path

from services.components.base import (
    INT,
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

JOBRUNNER = Path(__file__).with_name("jobrunner.py")
PORT = 8080


class JobQueue(Component):
    code = "job-queue"
    name = "Jobs queue"
    capabilities = (Capability.JOBS,)
    default_version = "1.0"
    description = "Queue that runs submitted batch jobs on the workspace."
    parameters = (
        local_port(),
        Parameter("max_parallel", INT, 2, "Jobs run at the same time.", (), 1, 64),
        *resources(cpu=1, memory_gb=2, storage_gb=5),
    )
    ports = (PORT,)
    image = "python:3.11-slim"
    secret_key = "token"
    health = HealthCheck("/health", PORT)

    def local_process(self, target: LocalTarget) -> LocalProcess:
        argv = [
            sys.executable,
            str(JOBRUNNER),
            "--port",
            str(target.port),
            "--state-dir",
            str(target.directory / "jobs"),
            "--workdir",
            str(target.workdir),
            "--max-parallel",
            str(target.parameters.get("max_parallel", 1)),
        ]
        url = f"http://127.0.0.1:{target.port}/jobs"
        endpoints = [{"name": "Jobs API", "url": url, "token": "bearer"}]
        return LocalProcess(argv, {"JOBRUNNER_TOKEN": target.secret}, endpoints)

    def kubernetes(self, target: Target) -> KubeWorkload:
        container = {
            "command": ["python", "/opt/jobrunner/jobrunner.py"],
            "args": [
                "--port",
                str(PORT),
                "--state-dir",
                "/data/jobs",
                "--workdir",
                "/data",
                "--max-parallel",
                str(target.parameters.get("max_parallel", 1)),
            ],
            "env": [secret_env(target, "JOBRUNNER_TOKEN", self.secret_key)],
            "ports": [{"name": "http", "containerPort": PORT}],
        }
        return KubeWorkload(
            container,
            scratch=True,  # without a claim, the jobs' state lives as long as the pod
            config_files={"jobrunner.py": JOBRUNNER.read_text()},
            config_path="/opt/jobrunner",
        )
