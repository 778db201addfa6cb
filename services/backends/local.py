"""Components as supervised processes in a local workspace.

Each component of a workspace lives in `<workspace dir>/services/<component>/`: its process
record (`process.json`, see `pools.supervisor`), its log (`service.log`) and its data. What
runs is the component class's `local_process()`; the process runs in the workspace's
directory with the workspace's environment (from its GPU allocations in the database, as
the workspace's environment file says), so it sees exactly the GPUs allocated to the
workspace (`CUDA_VISIBLE_DEVICES`).

The directory belongs to the workspace, whose code may change anything in it: every file
there is read and written without following links (`supervisor.read_tail`,
`supervisor.append_file`, `supervisor.make_directories`), and nothing read from it decides
what the portal does. What the process is, and its port, come from the supervisor's
registry, with any other ports reserved for it (`services.backends.ports`); its health
URL, endpoints and temporary directory are derived again from the component's class with
those ports, and the health check only asks 127.0.0.1 on its port.

Deploying twice finds the running process by its record and starts nothing; a process that
died is reported failed with the tail of its log; removal stops the process's whole session
(a component may start several processes; they all share the session of the one process
supervised) and leaves the data for a redeploy. Deleting the workspace deletes the
directory with everything in it.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from pools import isolation, supervisor
from pools.drivers.base import PermanentError, TransientError, WorkspaceSpec
from pools.drivers.local import ENV_FILE, LocalDriver
from services import components
from services.backends import ports as reservations
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
LOG_FILE = "service.log"
# How much of the end of a log is read: its tail for the page, and the latest start's
# output, where a component without a health URL shows its ready marker.
LOG_READ_LIMIT = 1024 * 1024
START_HEADER = "---- starting "
# A health check's limits, for the whole check however slowly the answer comes, and on
# how much of the answer is read: its status line is all that counts.
HEALTH_TIMEOUT = 2
HEALTH_MAX_BYTES = 1024
STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})[ \r\n]")


def executable(name: str) -> str:
    """The console script next to this interpreter (the portal's venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def local_target(
    ctx: ComponentContext,
    directory: Path,
    secret: str,
    port: int | None = None,
    ports: dict[str, int] | None = None,
) -> LocalTarget:
    """What the component's class needs to say how it runs here (on `port` once known,
    with its other `ports` reserved)."""
    return LocalTarget(
        workspace=ctx.spec.name,
        name=ctx.name,
        version=ctx.version,
        parameters=ctx.parameters,
        directory=directory,
        workdir=directory.parent.parent,
        port=port or fixed_port(ctx) or reservations.free_port(),
        secret=secret,
        free_port=reservations.free_port,
        executable=executable,
        ports=ports or {},
    )


def fixed_port(ctx: ComponentContext) -> int:
    """The port the component's services profile fixes for its process; 0 for none."""
    return int(ctx.parameters.get("port") or 0)


def plan(
    ctx: ComponentContext,
    directory: Path,
    secret: str,
    port: int | None = None,
    ports: dict[str, int] | None = None,
) -> tuple[LocalProcess, dict]:
    """The component's process, and how it is checked (health URL, ready marker, port,
    endpoints, temporary directory): the same answer for the same ports, so `check` and
    `remove` derive it again from the port the registry holds and those reserved for it."""
    target = local_target(ctx, directory, secret, port, ports)
    try:
        process = ctx.component.local_process(target)
    except NotRunnable as error:
        raise PermanentError(str(error)) from None
    meta = {
        "health_url": ctx.component.local_health_url(target),
        "ready_marker": ctx.component.ready_marker,
        "port": target.port,
        "endpoints": process.endpoints,
        "temp_dir": str(process.extra.get("temp_dir") or ""),
    }
    return process, meta


def local_url(url: str, port: int) -> bool:
    """Whether `url` is plain HTTP to 127.0.0.1 on `port`: the only place a health check
    may go."""
    try:
        parts = urlsplit(url)
        return parts.scheme == "http" and parts.hostname == "127.0.0.1" and parts.port == port
    except ValueError:
        return False


def health_ok(url: str, port: int) -> bool:
    """Whether the component's health URL, which must be `local_url`, answers with a 2xx
    status within HEALTH_TIMEOUT seconds.

    What answers on the port is the workspace's, so the check neither follows a redirect
    nor goes through a proxy of the portal's environment (it connects to 127.0.0.1 itself),
    and it reads the answer's status line under one deadline: an answer sent byte by byte
    cannot hold the worker (http.client's timeout is per read)."""
    if not local_url(url, port):
        return False
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + HEALTH_TIMEOUT
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HEALTH_TIMEOUT)
    try:
        connection.request("GET", path)
        return 200 <= _status(connection.sock, deadline) < 300
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()


def _status(sock: socket.socket, deadline: float) -> int:
    """The status of the HTTP answer on `sock`, from its first HEALTH_MAX_BYTES read by
    `deadline`; 0 when they hold no status line."""
    received = b""
    while b"\n" not in received and len(received) < HEALTH_MAX_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return 0
        sock.settimeout(left)
        chunk = sock.recv(HEALTH_MAX_BYTES - len(received))
        if not chunk:
            break
        received += chunk
    found = STATUS_LINE.match(received)
    return int(found[1]) if found else 0


def read_log(directory: Path) -> str:
    """The end of a component's log ("" when it is missing, a link or not a file)."""
    try:
        return supervisor.read_tail(directory / LOG_FILE, LOG_READ_LIMIT)
    except OSError:
        return ""


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
        if not os.path.lexists(workspace_dir / ENV_FILE):
            raise TransientError(f"Workspace {ctx.spec.name} has no environment file yet.")
        record = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
        if record and supervisor.is_running(record):
            return self.check(ctx)
        secret = (ctx.secret or _new_secret()) if ctx.component.has_secret else ""
        fixed = reservations.reserve_fixed(fixed_port(ctx))
        ports = reservations.reserve(ctx.component.local_ports)
        process, meta = plan(ctx, directory, secret, ports=ports)
        reserved = fixed | ports
        driver = LocalDriver(self.infrastructure)
        env = dict(os.environ) | driver.environment(ctx.spec) | process.env
        log = directory / LOG_FILE
        try:
            supervisor.make_directories(directory)
            supervisor.append_file(log, f"{START_HEADER}{ctx.component.name} at {time.ctime()}\n")
            record = supervisor.start(
                process.argv,
                directory,
                env,
                log,
                port=meta["port"],
                holder=ctx.spec.name,
                infrastructure=self.infrastructure,
                devices=driver.device_nodes(ctx.spec),
                limits=driver.limits(ctx.spec),
            )
        except OSError as error:
            reservations.release(reserved)
            return ComponentResult(FAILED, reason=str(error), log_tail=self._tail(ctx))
        except Exception:  # a DriverError of the sandbox (egress, /tmp): the task retries
            reservations.release(reserved)
            raise
        reservations.attach(reserved, record)
        record.save(directory / PROCESS_FILE)
        result = self.check(replace(ctx, secret=secret))
        result.secret = secret
        return result

    def check(self, ctx: ComponentContext) -> ComponentResult:
        directory = self.directory(ctx)
        record = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
        detail = {"pid": record.pid if record else None, "directory": str(directory)}
        if record is None:
            return ComponentResult(FAILED, reason="not started", detail=detail)
        if not supervisor.is_running(record):
            return ComponentResult(
                FAILED,
                endpoints=[],
                reason=f"{ctx.component.name} exited; see the log",
                log_tail=self._tail(ctx),
                detail=detail,
            )
        _, meta = plan(ctx, directory, ctx.secret, record.port, reservations.held(record))
        detail["port"] = record.port
        if self._answers(ctx, record, meta):
            endpoints = [dict(e) for e in meta["endpoints"]]
            return ComponentResult(READY, endpoints=endpoints, detail=detail)
        return ComponentResult(
            DEPLOYING, reason="starting", log_tail=self._tail(ctx), detail=detail
        )

    def _answers(self, ctx: ComponentContext, record, meta: dict) -> bool:
        if meta["health_url"]:
            return health_ok(meta["health_url"], record.port)
        if meta["ready_marker"]:
            latest = read_log(self.directory(ctx)).rpartition(START_HEADER)[2]
            return meta["ready_marker"] in latest and supervisor.healthy(record)
        return supervisor.healthy(record)

    def _tail(self, ctx: ComponentContext) -> str:
        return tail(read_log(self.directory(ctx)))

    def restart(self, ctx: ComponentContext) -> ComponentResult:
        """Stop whatever is left of its process (one alive that no longer answers
        included), then start it again; its data stays."""
        self.remove(ctx)
        return self.deploy(ctx)

    # -- remove ------------------------------------------------------------------------

    def remove(self, ctx: ComponentContext) -> None:
        directory = self.directory(ctx)
        stop_directory(directory)
        _remove_temp_dir(directory, _temp_dir(ctx, directory))

    def remove_all(self, spec: WorkspaceSpec) -> None:
        stop_all(self.workspace_dir(spec))


def stop_directory(directory: Path) -> bool:
    """Stop the component registered in `directory` and everything it started; idempotent."""
    record = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
    stopped = False
    if record is not None:
        stopped = supervisor.stop_session(record, timeout=10)
    return stopped


def stop_all(workspace_dir: Path) -> list[str]:
    """Stop every component of a workspace that the registry holds (whatever its files
    say) and delete their temporary directories; the codes of those that were running."""
    services = workspace_dir / SERVICES_DIR
    stopped = []
    for row, running in supervisor.stop_registered_below(services):
        parts = Path(row.directory).relative_to(os.path.abspath(services)).parts
        code = parts[0] if parts else ""
        if code:
            _remove_temp_dir(services / code, _temp_dir_of(code, services / code))
        if running:
            stopped.append(code)
    return stopped


def _temp_dir_of(code: str, directory: Path) -> str:
    """The temporary directory the component `code` has when it runs in `directory`."""
    found = components.component(code)
    if found is None:
        return ""
    name = directory.parent.parent.name
    spec = WorkspaceSpec(name=name, owner="", profile="", profile_version=0, groups=())
    ctx = ComponentContext(spec, found, found.default_version, found.resolve({}))
    return _temp_dir(ctx, directory)


def _temp_dir(ctx: ComponentContext, directory: Path) -> str:
    try:
        return plan(ctx, directory, ctx.secret)[1]["temp_dir"]
    except PermanentError:
        return ""


def _remove_temp_dir(directory: Path, path: str) -> None:
    """Delete a component's temporary directory (e.g. Ray's), `path` as its processes see
    it: in a sandbox, below the workspace's own /tmp (`isolation.host_path`). A link
    planted in its place or on the way is not followed (`supervisor.remove_tree`)."""
    workspace = isolation.workspace_of(directory)
    if path and os.path.isabs(path) and workspace is not None:
        supervisor.remove_tree(isolation.host_path(workspace, Path(path)))


def _new_secret() -> str:
    return secrets.token_urlsafe(24)
