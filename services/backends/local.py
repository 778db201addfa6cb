"""Components as supervised processes in a local workspace.

Each component of a workspace lives in `<workspace dir>/services/<component>/`: its process
record (`process.json`, see `pools.supervisor`), how to check it (`launch.json`), its log
(`service.log`) and its data. What runs is the component class's `local_process()`; the
process runs in the workspace's directory with the workspace's environment file loaded, so
it sees exactly the GPUs allocated to the workspace (`CUDA_VISIBLE_DEVICES`).

Deploying twice finds the running process by its record and starts nothing; a process that
died is reported failed with the tail of its log; removal stops the process's whole session
(a component may start several processes; they all share the session of the one process
supervised) and leaves the data for a redeploy. Deleting the workspace deletes the
directory with everything in it.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import sys
import time
import urllib.error
import urllib.request
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
from services.components import Component, LocalProcess, LocalTarget, NotRunnable

SERVICES_DIR = "services"
PROCESS_FILE = "process.json"
LAUNCH_FILE = "launch.json"
LOG_FILE = "service.log"


def executable(name: str) -> str:
    """The console script next to this interpreter (the portal's venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def workspace_env(workspace_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for line in (workspace_dir / ENV_FILE).read_text().splitlines():
        key, _, value = line.partition("=")
        if key:
            env[key] = shlex.split(value)[0] if value else ""
    return env


def local_target(ctx: ComponentContext, directory: Path, secret: str) -> LocalTarget:
    """What the component's class needs to say how it runs here."""
    return LocalTarget(
        workspace=ctx.spec.name,
        name=ctx.name,
        version=ctx.version,
        parameters=ctx.parameters,
        directory=directory,
        workdir=directory.parent.parent,
        port=int(ctx.parameters.get("port") or 0) or supervisor.free_port(),
        secret=secret,
        free_port=supervisor.free_port,
        executable=executable,
    )


def plan(ctx: ComponentContext, directory: Path, secret: str) -> tuple[LocalProcess, dict]:
    """The component's process, and what `check` needs later (health, endpoints)."""
    target = local_target(ctx, directory, secret)
    try:
        process = ctx.component.local_process(target)
    except NotRunnable as error:
        raise PermanentError(str(error)) from None
    meta = {
        "health_url": ctx.component.local_health_url(target),
        "ready_marker": ctx.component.ready_marker,
        "port": target.port,
        "endpoints": process.endpoints,
        **process.extra,
    }
    return process, meta


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
        secret = (ctx.secret or _new_secret()) if ctx.component.has_secret else ""
        process, meta = plan(ctx, directory, secret)
        env = workspace_env(workspace_dir) | process.env
        log = directory / LOG_FILE
        with open(log, "ab") as handle:
            handle.write(f"---- starting {ctx.component.name} at {time.ctime()}\n".encode())
        try:
            record = supervisor.start(process.argv, directory, env, log, port=meta["port"])
        except OSError as error:
            return ComponentResult(FAILED, reason=str(error), log_tail=self._tail(ctx))
        record.save(directory / PROCESS_FILE)
        (directory / LAUNCH_FILE).write_text(_json(meta))
        result = self.check(ctx)
        result.secret = secret
        return result

    def check(self, ctx: ComponentContext) -> ComponentResult:
        directory = self.directory(ctx)
        record = supervisor.ProcessRecord.load(directory / PROCESS_FILE)
        meta = _read_json(directory / LAUNCH_FILE)
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
        if meta.get("ready_marker"):
            log = self.directory(ctx) / LOG_FILE
            text = log.read_text(errors="replace") if log.exists() else ""
            return meta["ready_marker"] in text and supervisor.healthy(record)
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
    meta = _read_json(directory / LAUNCH_FILE)
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
