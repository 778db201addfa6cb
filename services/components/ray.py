"""Ray: a head node, and on Kubernetes workers joining it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from services.components.base import (
    INT,
    MAX_CPU,
    Capability,
    Component,
    KubeWorkers,
    KubeWorkload,
    LocalProcess,
    LocalTarget,
    Parameter,
    Target,
    local_port,
    resources,
)

GCS_PORT = 6379
# Worker pods besides the head: at most as many as a resource group may have nodes
# (`profiles.models.MAX_NODE_COUNT`), far below what a Deployment's replicas can hold.
MAX_WORKERS = 1000
# Ray Client's proxy starts each client's server with a Popen that runs Python between
# fork and exec, and closes the child's descriptors. gRPC's fork support restarts its
# poller thread in the child, which then finds its epoll descriptor closed (EBADF) and
# kills the child before exec: "Starting Ray client server failed", now and then, under
# load (grpc/grpc#43055, grpcio 1.85). The child only execs, so it needs no fork support.
GRPC_ENV = {"GRPC_ENABLE_FORK_SUPPORT": "false"}


def temp_dir(directory: Path) -> Path:
    """Ray's directory as its processes see it: in /tmp, short (Unix socket paths are
    limited to 107 bytes), and unique per workspace where workspaces share the host's
    /tmp (a host that does not isolate them); in a sandbox, /tmp is the workspace's own."""
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:10]
    return Path("/tmp") / f"gpupaas-ray-{digest}"


def client_port(target: LocalTarget) -> int:
    """Ray Client's port: the one reserved for it (`local_ports`). A cluster started
    before Ray Client's port was reserved has it next to the GCS port, as it was derived
    then, until it starts again."""
    if "client" in target.ports:
        return target.ports["client"]
    return target.port + 1 if target.port < 65535 else target.port - 1


class Ray(Component):
    code = "ray"
    name = "Ray"
    capabilities = (Capability.DISTRIBUTED_COMPUTE,)
    default_version = "2.47"
    description = "Ray head (and workers on multi-node profiles)."
    parameters = (
        local_port("Local GCS port"),
        Parameter("num_cpus", INT, 0, "CPUs Ray may use; 0 detects them.", (), 0, MAX_CPU),
        Parameter(
            "workers", INT, 0, "Worker pods besides the head (Kubernetes).", (), 0, MAX_WORKERS
        ),
        *resources(cpu=2, memory_gb=8),
    )
    ports = (GCS_PORT, 8265, 10001)
    # Ray Client's server, where notebooks and jobs reach the cluster. Reserved, not drawn
    # at each plan: every check plans the process again, and its endpoint must name the
    # port the running server listens on.
    local_ports = ("client",)
    image = "rayproject/ray:{version}.0"
    # grpc: Ray Client, the way a notebook's driver reaches the cluster (`local_process`).
    local_packages = ("ray", "grpc")
    ready_marker = "Ray runtime started"  # `ray start --block` has no health endpoint
    start_timeout = 120

    def local_process(self, target: LocalTarget) -> LocalProcess:
        temp = temp_dir(target.directory)
        client = client_port(target)
        argv = [
            target.executable("ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(target.port),
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--temp-dir",
            str(temp),
            # Fixed defaults would collide between two workspaces' clusters on one host.
            "--dashboard-port",
            str(target.free_port()),
            "--dashboard-agent-listen-port",
            str(target.free_port()),
            "--ray-client-server-port",
            str(client),
        ]
        if target.parameters.get("num_cpus"):
            argv += ["--num-cpus", str(target.parameters["num_cpus"])]
        # A sandboxed process sees only its own processes, and a driver given the cluster's
        # address looks for its node's raylet among them (`ray._private.services.
        # find_node_ids`), then for the raylet's sockets in the head's /tmp, which is the
        # workspace's own. Ray Client drivers run inside the head's sandbox instead, so
        # notebooks, jobs and the administrator's shell use that; the address serves
        # `ray status`.
        endpoints = [
            {
                "name": "Ray Client (ray.init, from the workspace)",
                "url": f"ray://127.0.0.1:{client}",
            },
            {
                "name": "Ray address (ray status, from the administrator's shell)",
                "url": f"127.0.0.1:{target.port}",
            },
        ]
        return LocalProcess(argv, GRPC_ENV, endpoints, extra={"temp_dir": str(temp)})

    def kubernetes(self, target: Target) -> KubeWorkload:
        container = {
            "command": ["ray", "start", "--head", f"--port={GCS_PORT}", "--block"],
            "env": [{"name": name, "value": value} for name, value in GRPC_ENV.items()],
            "args": ["--dashboard-host=0.0.0.0", "--disable-usage-stats"],
            "ports": [
                {"name": "gcs", "containerPort": GCS_PORT},
                {"name": "dashboard", "containerPort": 8265},
                {"name": "client", "containerPort": 10001},
            ],
        }
        workers = ()
        replicas = int(target.parameters.get("workers", 0))
        if replicas:
            join = ["ray", "start", f"--address={target.name}:{GCS_PORT}", "--block"]
            overrides = {"name": "ray-worker", "command": join, "args": ["--disable-usage-stats"]}
            workers = (KubeWorkers("worker", "worker", replicas, overrides),)
        return KubeWorkload(container, workers=workers)
