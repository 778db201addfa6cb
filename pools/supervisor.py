"""Supervised processes for local workspaces (e.g. JupyterLab for a services profile).

A process is started detached in its own session (setsid), so it survives the django-q2
worker that started it. What identifies it is the PID *and* its start time from
/proc/<pid>/stat: a PID the kernel has reused for another process has a different start
time, so it is never mistaken for ours (and never killed by us). The record is a small JSON
file kept next to the workspace, so any worker can find, health-check and stop it later.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_time: int  # clock ticks since boot, field 22 of /proc/<pid>/stat
    argv: list[str]
    port: int | None = None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> ProcessRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a process, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def start(argv: list[str], cwd: Path, env: dict[str, str], log_path: Path, port=None):
    """Start `argv` detached (own session, no terminal) and return its record."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # setsid: not killed with the worker's process group
            close_fds=True,
        )
    found = _stat(process.pid)
    if found is None:  # exited (and was reaped) before we could look
        raise OSError(f"{argv[0]} exited at once; see {log_path}")
    return ProcessRecord(pid=process.pid, start_time=found[1], argv=list(argv), port=port)


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not stay a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_running(record: ProcessRecord) -> bool:
    """Whether the recorded process (same PID and same start time) is still alive."""
    found = _stat(record.pid)
    if found is None or found[1] != record.start_time:
        return False
    if found[0] in ("Z", "X"):
        _reap(record.pid)
        return False
    return True


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
    """SIGTERM the process's session, SIGKILL it after `timeout`; a no-op if it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not is_running(record):
            return
        try:
            os.killpg(record.pid, sig)  # the process leads its own group (setsid)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not is_running(record):
                return
            time.sleep(0.05)
    if is_running(record):
        raise OSError(f"process {record.pid} did not stop")


def stop_session(record: ProcessRecord, timeout: float = 5.0) -> bool:
    """Stop the process and whatever is left of its session; True if it was running."""
    running = is_running(record)
    if running:
        stop(record, timeout=timeout)
    _kill_session(record.pid)
    return running


def stop_recorded_below(directory: Path, record_name: str) -> list[Path]:
    """Stop every process recorded in a `record_name` file below `directory` (a workspace
    going away takes every process it holds, whoever started it); the stopped ones' files."""
    stopped = []
    for path in sorted(directory.glob(f"**/{record_name}")):
        record = ProcessRecord.load(path)
        if record is not None and stop_session(record):
            stopped.append(path)
        path.unlink(missing_ok=True)
    return stopped


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


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
