"""Supervised processes for local workspaces (e.g. JupyterLab for a services profile).

A process is started detached in its own session (setsid), so it survives the django-q2
worker that started it. What identifies it is the PID *and* its start time from
/proc/<pid>/stat: a PID the kernel has reused for another process has a different start
time, so it is never mistaken for ours (and never killed by us).

Every process started is registered in the database (`SupervisedProcess`) and unregistered
when it is stopped. The registry is the truth: a record file (`ProcessRecord.save`, a small
JSON file next to the process) may be changed or deleted by the workspace that owns its
directory, so the supervisor signals only what the registry holds, and the sweep finds
every process whose workspace is gone even when its directory is gone too
(`stop_orphans`).

A process started in a workspace directory runs isolated when the host can do it
(`pools.isolation`): as the workspace's own uid, in a bubblewrap sandbox, without the
portal's environment. Callers (the local driver, the local services backend) need not know.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from django.db import transaction
from django.db.models import Q

from pools import cgroups, isolation
from pools.drivers.base import TransientError
from pools.models import SupervisedProcess
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure

RECORD_LIMIT = 64 * 1024  # a record file is a few hundred bytes; never read more
HOST = socket.gethostname()
# Start times count from boot: after a reboot a new process may have an old one's PID and
# start time, so a registration is only valid within the boot that made it.
BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_time: int  # clock ticks since boot, field 22 of /proc/<pid>/stat
    argv: list[str]
    port: int | None = None
    uid: int | None = None  # the workspace's own uid when it runs as one
    sandboxed: bool = False  # the PID is bubblewrap's, the command runs inside it

    def save(self, path: Path) -> None:
        """Write the record file (never through a link) and note where it is."""
        write_file(path, json.dumps(asdict(self)))
        rows = _this_boot().filter(record_path=str(path))
        rows.exclude(pid=self.pid, start_time=self.start_time).update(record_path="")
        _rows(self).update(record_path=str(path))

    @classmethod
    def load(cls, path: Path) -> ProcessRecord | None:
        """The process last saved to `path`, from the registry; else whatever the file
        says (a process the registry does not hold is never running for `is_running`)."""
        row = _this_boot().filter(record_path=str(path)).last()
        if row is not None:
            return _record(row)
        try:
            data = json.loads(read_file(path))
            record = cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if not isinstance(record.pid, int) or not isinstance(record.start_time, int):
            return None
        return record

    @classmethod
    def registered_at(cls, path: Path) -> ProcessRecord | None:
        """The process last saved to `path`, from the registry only (a record file, which
        may name any process, even another workspace's registered one, is not read)."""
        row = _this_boot().filter(record_path=str(path)).last()
        return _record(row) if row is not None else None


def _record(row: SupervisedProcess) -> ProcessRecord:
    return ProcessRecord(
        pid=row.pid,
        start_time=row.start_time,
        argv=list(row.argv),
        port=row.port,
        uid=row.uid,
        sandboxed=row.sandboxed,
    )


def _this_boot():
    return SupervisedProcess.objects.filter(host=HOST, boot_id=BOOT_ID)


def _rows(record: ProcessRecord):
    return _this_boot().filter(pid=record.pid, start_time=record.start_time)


def registered(record: ProcessRecord) -> bool:
    return _rows(record).exists()


# -- files in a workspace, which its owner controls -------------------------------------


def write_file(path: Path, text: str) -> None:
    """Replace `path` atomically; a link or anything else planted there is replaced, never
    followed (nor one on the way, inside a workspace: `isolation.open_directory`)."""
    directory = isolation.open_directory(path.parent)
    try:
        temporary = f".{path.name}.{os.urandom(6).hex()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(temporary, flags, 0o644, dir_fd=directory)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path.name, src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        os.close(directory)


def read_file(path: Path, limit: int = RECORD_LIMIT) -> str:
    """A regular file's text, never through a link nor from a FIFO; OSError otherwise."""
    fd = _open_in(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return handle.read(limit).decode(errors="replace")


def read_tail(path: Path, limit: int) -> str:
    """The last `limit` bytes of a regular file, as text; never through a link nor from a
    FIFO; OSError otherwise (a missing file included)."""
    fd = _open_in(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        handle.seek(max(0, info.st_size - limit))
        return handle.read(limit).decode(errors="replace")


def append_file(path: Path, text: str) -> None:
    """Append to a regular file (created when absent), never through a link nor to a FIFO."""
    fd = _open_log(path)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def remove_file(path: Path) -> None:
    """Delete a file, never through a link on the way inside a workspace; one already
    gone, or out of reach but through a link, is nothing to delete."""
    try:
        directory = isolation.open_directory(path.parent)
    except OSError:
        return
    try:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(path.name, dir_fd=directory)
    finally:
        os.close(directory)


def remove_tree(path: Path) -> None:
    """Delete `path` and everything below it, never following a link on the way inside a
    workspace, nor below it; nothing to do when it is gone or out of reach but through a
    link. However deep: shutil.rmtree recurses once per level and fails past about a
    thousand, and a workspace's own code can nest deeper, so coreutils' rm walks the
    tree, from the parent directory's fd."""
    try:
        parent = isolation.open_directory(path.parent)
    except OSError:
        return
    try:
        done = subprocess.run(
            ["rm", "-rf", "--one-file-system", "--", f"/proc/self/fd/{parent}/{path.name}"],
            pass_fds=(parent,),
            capture_output=True,
            text=True,
        )
    finally:
        os.close(parent)
    if done.returncode != 0:
        raise OSError(f"Could not remove {path}: {done.stderr.strip()[-500:]}")


def make_directories(path: Path) -> None:
    """`mkdir -p` inside a workspace: each step is made or entered without following a
    link (`isolation.open_directory`), so a planted link never leads it elsewhere."""
    workspace = isolation.workspace_of(path)
    if workspace is None:
        path.mkdir(parents=True, exist_ok=True)
        return
    current = workspace
    for part in Path(os.path.abspath(path)).relative_to(workspace).parts:
        directory = isolation.open_directory(current)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=directory)
        finally:
            os.close(directory)
        current = current / part
    os.close(isolation.open_directory(current))  # a link or a file there: OSError


def _open_in(path: Path, flags: int, mode: int = 0o644) -> int:
    directory = isolation.open_directory(path.parent)
    try:
        return os.open(path.name, flags, mode, dir_fd=directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def _host_port(port: int):
    """The service's port on the host's 127.0.0.1, bound but not listening: the relay in
    the workspace's network listens on it once the service answers (`pools/relay.py`)."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        yield sock
    finally:
        sock.close()


def _open_log(path: Path) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = _open_in(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


# -- processes --------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a process, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields_ = _fields_after_name(raw)
    return fields_[0], int(fields_[19])


def _fields_after_name(raw: bytes) -> list[str]:
    """The fields of a /proc/<pid>/stat after the command name (field 2). Any process may
    name itself with any bytes, spaces, parentheses or bytes that are not UTF-8 included
    (/proc/self/comm): so the file is read as bytes and split after the last ')'; what
    follows is ASCII."""
    return raw[raw.rindex(b")") + 2 :].decode("ascii").split()


def start(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    port=None,
    *,
    holder: str | None = None,
    infrastructure=None,
    devices: Sequence[str] = (),
    limits: cgroups.Limits | None = None,
    host_network: socket.socket | None = None,
) -> ProcessRecord:
    """Start `argv` detached (own session, no terminal), register and return its record.

    In a workspace directory (below the workspaces root) on a host that isolates, the
    process runs sandboxed as the workspace's identity (`pools.isolation`), able to open
    the device nodes in `devices` (its GPUs', `LocalDriver.device_nodes`) and no other
    GPU's. Any process of a workspace runs in the workspace's control group, held to
    `limits` (its profile's CPUs and memory, `LocalDriver.limits`) where the host enforces
    them (`pools.cgroups`). `holder` is the workspace's resource name (default: the
    directory's), `infrastructure` the local infrastructure (default: the one local entry).

    A workspace with a network of its own gets its way out first (`ensure_egress`).
    `host_network` is for that way out only: the process runs in the host's network,
    handed this socket, which was made in the workspace's.
    """
    workspace = isolation.workspace_of(cwd)
    sandboxed = workspace is not None and isolation.host_capability().isolated
    command, popen_cwd, umask, uid = list(argv), cwd, -1, None
    with contextlib.ExitStack() as cleanup:
        passed: tuple[int, ...] = ()
        if sandboxed:
            uid = isolation.prepare(workspace)
            isolation.hand_over(workspace, cwd, uid)
            tmp = isolation.private_tmp(workspace, uid)
            cleanup.callback(os.close, tmp)
            passed = (tmp,)
            if host_network is not None:
                network = []
                passed += (host_network.fileno(),)
            else:
                network = isolation.network_prefix(workspace)
                if network:
                    ensure_egress(workspace, holder, infrastructure, limits)
            if network and port is not None:
                listener = cleanup.enter_context(_host_port(port))
                passed += (listener.fileno(),)
                command = isolation.relayed(command, listener.fileno(), port)
            command = network + isolation.sandbox_argv(
                command,
                workspace,
                cwd,
                uid,
                tmp,
                devices,
                host_network=host_network is not None,
            )
            env = isolation.sandbox_env(env, workspace)
            popen_cwd, umask = "/", 0o077  # never chdir as root through the workspace's links
        if workspace is not None:
            command = cgroups.join_argv(workspace, limits) + command
        log = _open_log(log_path)
        cleanup.callback(os.close, log)
        process = subprocess.Popen(
            command,
            cwd=popen_cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # setsid: not killed with the worker's process group
            close_fds=True,
            pass_fds=passed,
            umask=umask,
        )
    found = _stat(process.pid)
    if found is None:  # exited (and was reaped) before we could look
        raise OSError(f"{argv[0]} exited at once; see {log_path}")
    record = ProcessRecord(
        pid=process.pid,
        start_time=found[1],
        argv=list(argv),
        port=port,
        uid=uid,
        sandboxed=sandboxed,
    )
    if holder is None:
        holder = workspace.name if workspace is not None else ""
    if infrastructure is None and holder:
        infrastructure = Infrastructure.objects.filter(kind=InfrastructureKind.LOCAL).first()
    with transaction.atomic():
        _rows(record).delete()  # a row left by a process of the same PID and start time
        SupervisedProcess.objects.create(  # is impossible in this boot: that one ended
            host=HOST,
            boot_id=BOOT_ID,
            pid=record.pid,
            start_time=record.start_time,
            argv=record.argv,
            holder=holder,
            infrastructure=infrastructure,
            directory=os.path.abspath(cwd),
            port=port,
            uid=uid,
            sandboxed=sandboxed,
        )
    return record


def run_once(
    argv: list[str],
    workspace: Path,
    env: dict[str, str],
    *,
    devices: Sequence[str] = (),
    limits: cgroups.Limits | None = None,
    timeout: float,
) -> subprocess.CompletedProcess:
    """Run `argv` to its end as the workspace's processes run (sandboxed as its identity,
    with `devices`, in its control group), its output captured; for the portal's own short
    checks, so it has no network of its own and is not registered. TimeoutExpired after
    `timeout` seconds (the process is killed, and what runs in its sandbox with it)."""
    workspace = Path(os.path.abspath(workspace))
    command, cwd, umask = list(argv), workspace, -1
    with contextlib.ExitStack() as cleanup:
        passed: tuple[int, ...] = ()
        if isolation.host_capability().isolated:
            uid = isolation.prepare(workspace)
            tmp = isolation.private_tmp(workspace, uid)
            cleanup.callback(os.close, tmp)
            passed = (tmp,)
            command = isolation.sandbox_argv(
                command, workspace, workspace, uid, tmp, devices, die_with_parent=True
            )
            env = isolation.sandbox_env(env, workspace)
            cwd, umask = Path("/"), 0o077  # never chdir as root through the workspace's links
        command = cgroups.join_argv(workspace, limits) + command
        return subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            umask=umask,
            pass_fds=passed,
        )


EGRESS_RECORD = "egress.json"  # the proxy's record, in the workspace's directory
EGRESS_LOG = "egress.log"  # one line per connection it allowed or refused, and why


def egress_process(workspace: Path) -> ProcessRecord | None:
    """The workspace's HTTPS proxy, from the registry (running or not); None if none."""
    return ProcessRecord.registered_at(Path(os.path.abspath(workspace)) / EGRESS_RECORD)


def old_egress_rules(record: ProcessRecord) -> str:
    """How the rules the workspace's proxy runs with differ from those it would get now,
    in words ("" when they do not): the administrator changed the settings since."""
    if not isolation.host_capability().egress:
        return "workspaces have no way out of their network now"
    return isolation.old_egress_rules(record.argv)


def ensure_egress(
    workspace: Path,
    holder: str | None = None,
    infrastructure=None,
    limits: cgroups.Limits | None = None,
) -> ProcessRecord | None:
    """Start the workspace's way out of its network unless it runs with the rules it
    would be started with now: its HTTPS proxy (`pools/relay.py`), sandboxed as the
    workspace in the host's network, listening in the workspace's. One running with old
    rules (`old_egress_rules`) is stopped first, with its tunnels: a revoked exception
    must not stay open. None where workspaces have no way out (a proxy left from before
    is stopped). Under the host's lock, so two processes starting at once (or a task
    delivered twice) make one proxy; the workspace gets its uid first, as `start` would
    take that lock again for it (flock is not re-entrant).
    """
    workspace = Path(os.path.abspath(workspace))
    egress = isolation.host_capability().egress
    if not egress and egress_process(workspace) is None:
        return None
    if egress:
        isolation.prepare(workspace)
    with isolation.directory_lock(workspace.parent):
        existing = egress_process(workspace)
        if existing is not None and is_running(existing) and not old_egress_rules(existing):
            return existing
        if existing is not None:
            stop_session(existing)  # unregister it, and end what its sandbox left
        if not egress:
            return None
        try:
            listener = isolation.egress_listener(workspace)
        except OSError as error:
            why = f"No way out of {workspace.name}'s network."
            raise TransientError(why, str(error)) from error
        with listener:
            argv = isolation.egress_argv(listener.fileno())
            record = start(
                argv,
                workspace,
                {},
                workspace / EGRESS_LOG,
                holder=holder,
                infrastructure=infrastructure,
                limits=limits,
                host_network=listener,
            )
        record.save(workspace / EGRESS_RECORD)
        return record


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not stay a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _alive(record: ProcessRecord) -> bool:
    """Whether the process with this PID and start time exists (registered or not)."""
    found = _stat(record.pid)
    if found is None or found[1] != record.start_time:
        return False
    if found[0] in ("Z", "X"):
        _reap(record.pid)
        return False
    return True


def is_running(record: ProcessRecord) -> bool:
    """Whether the recorded process (registered, same PID and start time) is alive."""
    return _alive(record) and registered(record)


def healthy(record: ProcessRecord, timeout: float = 1.0) -> bool:
    """Alive and, when it serves a port, accepting connections on 127.0.0.1."""
    if not is_running(record):
        return False
    if record.port is None:
        return True
    try:
        with socket.create_connection(("127.0.0.1", record.port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_healthy(record: ProcessRecord, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(record):
            return True
        if not is_running(record):
            return False
        time.sleep(0.1)
    return False


def stop(record: ProcessRecord, timeout: float = 5.0) -> None:
    """SIGTERM the process's session, SIGKILL it after `timeout`; unregister it.

    A no-op for a process the registry does not hold (a forged or stale record). In a
    sandbox the SIGTERM goes to the command inside, not to bubblewrap, which leaves with
    it; the SIGKILL reaches bubblewrap's init too, which ends the sandbox's whole PID
    namespace, whatever left the session inside.
    """
    if not registered(record):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _alive(record):
            break
        inside = [p for p in _session_members(record.pid) if p != record.pid]
        try:
            if sig == signal.SIGTERM and record.sandboxed and inside:
                for pid in inside:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            else:
                os.killpg(record.pid, sig)  # the process leads its own group (setsid)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(record):
                break
            time.sleep(0.05)
    if _alive(record):
        raise OSError(f"process {record.pid} did not stop")
    _rows(record).delete()


def stop_session(record: ProcessRecord, timeout: float = 5.0) -> bool:
    """Stop the process and whatever is left of its session; True if it was running."""
    if not registered(record):
        return False
    running = _alive(record)
    if running:
        stop(record, timeout=timeout)
    if _reused(record):  # ended long ago: its PID, and the session of that PID, are another's
        _rows(record).delete()
        return False
    _kill_session(record.pid)
    _rows(record).delete()
    return running


def stop_recorded_below(
    directory: Path, record_name: str, keep: Collection[Path] = ()
) -> list[Path]:
    """Stop every registered process started in `directory` or below it (a workspace going
    away takes every process it holds, whoever started it), and remove the `record_name`
    files there; the stopped ones' record paths.

    A process recorded at a path in `keep` is stopped but stays registered, ended, so
    `ProcessRecord.registered_at` still says what it ran (command, port) for a restart.
    """
    stopped = []
    for row, running in stop_registered_below(directory, keep):
        # Only the registered records' files: a walk of the tree would be at the mercy of
        # what the workspace put there (a directory nested past PATH_MAX fails it, for
        # good), and a file no registered process wrote signals nothing anyway.
        path = Path(row.record_path or Path(row.directory) / record_name)
        remove_file(path)
        if running:
            stopped.append(path)
    return stopped


def stop_registered_below(
    directory: Path, keep: Collection[Path] = ()
) -> list[tuple[SupervisedProcess, bool]]:
    """Stop every registered process started in `directory` or below it, touching no file
    there; each one's registry row, and whether it was running. `keep`: as for
    `stop_recorded_below`."""
    below = os.path.abspath(directory)
    kept = {str(path) for path in keep}
    rows = _this_boot().filter(Q(directory=below) | Q(directory__startswith=below + os.sep))
    done = []
    for row in rows:
        done.append((row, stop_session(_record(row))))
        if row.record_path and row.record_path in kept:
            row.save(force_insert=True)  # stop_session unregistered it: register it again
    return done


def stop_orphans(live_names: Callable[[Infrastructure], set[str]]) -> list[str]:
    """Stop every process of this host whose workspace is gone; for the sweep.

    1. Read the registry (before the live names: a workspace created in between is live
       in the second read, so its new process is never taken for an orphan).
    2. A process belongs to nothing when its infrastructure is deleted, its holder is not
       among `live_names(infrastructure)`, or its working directory no longer exists.
    3. Stop those (their whole session, or sandbox) and unregister them; forget rows of
       such processes that already ended, and the network and control group of a
       workspace that is gone.
       Processes started outside any workspace (no holder) are left alone.
    Rows of an earlier boot of this host are deleted: their processes are gone.
    Returns "<holder> pid <pid>" for each process stopped.
    """
    SupervisedProcess.objects.filter(host=HOST).exclude(boot_id=BOOT_ID).delete()
    rows = list(_this_boot().exclude(holder="").select_related("infrastructure"))
    live: dict[int | None, set[str]] = {}
    stopped, gone = [], set()
    for row in rows:
        infrastructure = row.infrastructure
        key = infrastructure.pk if infrastructure else None
        if key not in live:
            live[key] = set(live_names(infrastructure)) if infrastructure else set()
        if row.holder in live[key] and os.path.isdir(row.directory):
            continue
        if stop_session(_record(row)):
            stopped.append(f"{row.holder} pid {row.pid}")
        workspace = isolation.workspace_of(Path(row.directory))
        if workspace is not None and (row.holder not in live[key] or not workspace.is_dir()):
            gone.add(workspace)
    for workspace in gone:  # once each of its processes is stopped: this kills what is left
        isolation.forget_network(workspace)
        cgroups.forget(workspace)
    return stopped


def _reused(record: ProcessRecord) -> bool:
    """Whether another process has the record's PID now (so a session of that id is not
    the one our process led: while any member of our session lives, the kernel keeps its
    id from being handed out again)."""
    found = _stat(record.pid)
    return found is not None and found[1] != record.start_time


def _kill_session(sid: int) -> None:
    """SIGKILL what is left of the session the supervised process led (its children).

    The kernel never hands out a PID still in use as a session id, so the members of
    session `sid` are exactly what our process started.
    """
    for _ in range(50):
        members = _session_members(sid)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _process_stats():
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process; one
    that exits while being read is left out."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_bytes()
        except OSError:
            continue
        yield int(entry.name), _fields_after_name(raw)


def _session_members(sid: int) -> list[int]:
    return [
        pid
        for pid, fields_ in _process_stats()
        if int(fields_[3]) == sid and fields_[0] not in ("Z", "X")
    ]


def cpu_seconds(holder: str) -> float | None:
    """CPU seconds used so far by the registered processes of `holder` (a workspace's
    resource name) and everything they started, this boot; None when none is running.

    Counts user and system time of each process in the trees below the registered PIDs
    (through bubblewrap, and kernels that left the session), with the time of the children
    they have waited for: a kernel that exited still counts through its parent.
    """
    roots = {
        record.pid for record in map(_record, _this_boot().filter(holder=holder)) if _alive(record)
    }
    if not roots:
        return None
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for pid, fields_ in _process_stats():
        children.setdefault(int(fields_[1]), []).append(pid)
        ticks[pid] = sum(int(value) for value in fields_[11:15])
    total, todo = 0, list(roots)
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
