"""Components as supervised processes in a local workspace.

Each component of a workspace lives in `<workspace dir>/services/<component>/`: its process
record (`process.json`, see `pools.supervisor`), its log (`service.log`) and its data
(MLflow's database and artifacts, the jobs queue's jobs). The process runs in the
workspace's directory with the workspace's environment file loaded, so it sees exactly the
GPUs allocated to the workspace (`CUDA_VISIBLE_DEVICES`).

Deploying twice finds the running process by its record and starts nothing; a process that
died is reported failed with the tail of its log; removal stops the whole process group
(Ray's head starts several processes; they all share the session of `ray start --block`,
the one process supervised) and leaves the data for a redeploy. Deleting the workspace
deletes the directory with everything in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pools import supervisor
from pools.drivers.base import PermanentError, TransientError, WorkspaceSpec
from pools.drivers.local import ENV_FILE, LocalDriver
from services.backends.base import (
    DEPLOYING,
    FAILED,
    READY,
    ComponentContext,
    ComponentResult,
    ServicesBackend,
    tail,
)
from services.components import Component

SERVICES_DIR = "services"
PROCESS_FILE = "process.json"
LOG_FILE = "service.log"
JOBRUNNER = Path(__file__).with_name("jobrunner.py")
READY_MARKERS = {"ray": "Ray runtime started"}


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    port: int
    env: dict[str, str]
    health_url: str  # "" = use READY_MARKERS / the TCP port
    endpoints: list[dict]
    extra: dict


def _bin(name: str) -> str:
    """The console script next to this interpreter (the portal's venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def ray_temp_dir(directory: Path) -> Path:
    """Short (Unix socket paths are limited to 107 bytes) and unique per workspace."""
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"gpupaas-ray-{digest}"


def workspace_env(workspace_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for line in (workspace_dir / ENV_FILE).read_text().splitlines():
        key, _, value = line.partition("=")
        if key:
            env[key] = shlex.split(value)[0] if value else ""
    return env


def _port(parameters: dict) -> int:
    return int(parameters.get("port") or 0) or supervisor.free_port()


def plan(ctx: ComponentContext, directory: Path, secret: str) -> Launch:
    """How to run the component: argv, port, environment, health check and endpoints."""
    code, params = ctx.code, ctx.parameters
    port = _port(params)
    base = f"http://127.0.0.1:{port}"
    if code == "jupyterlab":
        argv = [
            _bin("jupyter"),
            "lab",
            "--no-browser",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={directory.parent.parent}",
            f"--ServerApp.default_url={params.get('default_url') or '/lab'}",
        ]
        if os.geteuid() == 0:
            argv.append("--allow-root")
        # The token travels in the environment, not on the command line (ps shows that).
        env = {"JUPYTER_TOKEN": secret, "JUPYTER_RUNTIME_DIR": str(directory / "runtime")}
        endpoints = [{"name": "JupyterLab", "url": f"{base}/lab", "token": "query"}]
        return Launch(argv, port, env, f"{base}/api", endpoints, {})
    if code == "mlflow":
        argv = [
            _bin("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(params.get("workers", 1)),
            "--backend-store-uri",
            f"sqlite:///{directory / 'mlflow.db'}",
            "--default-artifact-root",
            str(params.get("artifact_root") or directory / "artifacts"),
        ]
        endpoints = [
            {"name": "MLflow UI", "url": f"{base}/"},
            {"name": "MLFLOW_TRACKING_URI", "url": base},
        ]
        return Launch(argv, port, {}, f"{base}/health", endpoints, {})
    if code == "ray":
        temp = ray_temp_dir(directory)
        argv = [
            _bin("ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--temp-dir",
            str(temp),
            # Fixed defaults would collide between two workspaces' clusters on one host.
            "--dashboard-port",
            str(supervisor.free_port()),
            "--dashboard-agent-listen-port",
            str(supervisor.free_port()),
        ]
        if params.get("num_cpus"):
            argv += ["--num-cpus", str(params["num_cpus"])]
        endpoints = [{"name": "Ray address (ray.init)", "url": f"127.0.0.1:{port}"}]
        return Launch(argv, port, {}, "", endpoints, {"temp_dir": str(temp)})
    if code in ("job-queue", "training-runner"):
        argv = [
            sys.executable,
            str(JOBRUNNER),
            "--port",
            str(port),
            "--state-dir",
            str(directory / "jobs"),
            "--workdir",
            str(directory.parent.parent),
            "--max-parallel",
            str(params.get("max_parallel", 1)),
        ]
        env = {"JOBRUNNER_TOKEN": secret}
        endpoints = [{"name": "Jobs API", "url": f"{base}/jobs", "token": "bearer"}]
        return Launch(argv, port, env, f"{base}/health", endpoints, {})
    raise PermanentError(f"{ctx.component.name} has no local realisation.")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalServices(ServicesBackend):
    """Components as supervised processes next to a local workspace."""

    def availability(self, component: Component) -> tuple[bool, str]:
        return component.local_availability()

    def workspace_dir(self, spec: WorkspaceSpec) -> Path:
        return LocalDriver(self.infrastructure).directory(spec.name)

    def directory(self, ctx: ComponentContext) -> Path:
        return self.workspace_dir(ctx.spec) / SERVICES_DIR / ctx.code

    # -- deploy ------------------------------------------------------------------------

    def deploy(self, ctx: ComponentContext) -> ComponentResult:
        directory = self.directory(ctx)
        workspace_dir = self.workspace_dir(ctx.spec)
        if not (workspace_dir / ENV_FILE).exists():
            raise TransientError(f"Workspace {ctx.spec.name} has no environment file yet.")
        record = supervisor.ProcessRecord.load(directory / PROCESS_FILE)
        if record and supervisor.is_running(record):
            return self.check(ctx)
        directory.mkdir(parents=True, exist_ok=True)
        secret = ctx.secret or _new_secret()
        launch = plan(ctx, directory, secret)
        env = workspace_env(workspace_dir) | launch.env
        log = directory / LOG_FILE
        with open(log, "ab") as handle:
            handle.write(f"---- starting {ctx.component.name} at {time.ctime()}\n".encode())
        try:
            record = supervisor.start(launch.argv, directory, env, log, port=launch.port)
        except OSError as error:
            return ComponentResult(FAILED, reason=str(error), log_tail=self._tail(ctx))
        record.save(directory / PROCESS_FILE)
        meta = {
            "health_url": launch.health_url,
            "endpoints": launch.endpoints,
            "secret": bool(launch.env),
            **launch.extra,
        }
        (directory / "launch.json").write_text(_json(meta))
        result = self.check(ctx)
        result.secret = secret if launch.env else ""
        return result

    def check(self, ctx: ComponentContext) -> ComponentResult:
        directory = self.directory(ctx)
        record = supervisor.ProcessRecord.load(directory / PROCESS_FILE)
        meta = _read_json(directory / "launch.json")
        detail = {"pid": record.pid if record else None, "directory": str(directory)}
        if record is None:
            return ComponentResult(FAILED, reason="not started", detail=detail)
        endpoints = [dict(e) for e in meta.get("endpoints", [])]
        if not supervisor.is_running(record):
            return ComponentResult(
                FAILED,
                endpoints=[],
                reason=f"{ctx.component.name} exited; see the log",
                log_tail=self._tail(ctx),
                detail=detail,
            )
        if self._answers(ctx, record, meta):
            return ComponentResult(READY, endpoints=endpoints, detail=detail)
        return ComponentResult(
            DEPLOYING, reason="starting", log_tail=self._tail(ctx), detail=detail
        )

    def _answers(self, ctx: ComponentContext, record, meta: dict) -> bool:
        if meta.get("health_url"):
            return _http_ok(meta["health_url"])
        marker = READY_MARKERS.get(ctx.code)
        if marker:
            log = self.directory(ctx) / LOG_FILE
            return marker in log.read_text(errors="replace") and supervisor.healthy(record)
        return supervisor.healthy(record)

    def _tail(self, ctx: ComponentContext) -> str:
        log = self.directory(ctx) / LOG_FILE
        return tail(log.read_text(errors="replace")) if log.exists() else ""

    # -- remove ------------------------------------------------------------------------

    def remove(self, ctx: ComponentContext) -> None:
        stop_directory(self.directory(ctx))

    def remove_all(self, spec: WorkspaceSpec) -> None:
        stop_all(self.workspace_dir(spec))


def stop_directory(directory: Path) -> bool:
    """Stop the component recorded in `directory` and everything it started; idempotent."""
    path = directory / PROCESS_FILE
    record = supervisor.ProcessRecord.load(path)
    stopped = False
    if record is not None:
        stopped = supervisor.stop_session(record, timeout=10)
        path.unlink(missing_ok=True)
    meta = _read_json(directory / "launch.json")
    if meta.get("temp_dir"):
        shutil.rmtree(meta["temp_dir"], ignore_errors=True)
    return stopped


def stop_all(workspace_dir: Path) -> list[str]:
    """Stop every component of a workspace."""
    stopped = []
    for path in sorted((workspace_dir / SERVICES_DIR).glob(f"*/{PROCESS_FILE}")):
        if stop_directory(path.parent):
            stopped.append(path.parent.name)
    return stopped


def _new_secret() -> str:
    return secrets.token_urlsafe(24)


def _json(data: dict) -> str:
    return json.dumps(data)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
