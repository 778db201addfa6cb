import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pools import isolation, supervisor

pytestmark = pytest.mark.django_db  # every supervised process is registered


@pytest.fixture
def http_server(tmp_path):
    port = supervisor.free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    record = supervisor.start(argv, tmp_path, {"PATH": "/usr/bin:/bin"}, tmp_path / "log", port)
    yield record
    supervisor.stop(record)


def test_a_started_process_is_detached_running_and_healthy(http_server):
    assert supervisor.wait_healthy(http_server)
    stat = Path(f"/proc/{http_server.pid}/stat").read_text()
    session_id = int(stat[stat.rindex(")") + 2 :].split()[3])
    assert session_id == http_server.pid  # setsid: it leads its own session


def test_the_record_survives_a_restart_of_whoever_started_it(http_server, tmp_path):
    http_server.save(tmp_path / "process.json")
    found = supervisor.ProcessRecord.load(tmp_path / "process.json")
    assert found == http_server
    assert supervisor.is_running(found)


def test_a_reused_pid_is_not_mistaken_for_ours(http_server):
    impostor = dataclasses.replace(http_server, start_time=http_server.start_time + 1)
    assert not supervisor.is_running(impostor)
    supervisor.stop(impostor)  # must not touch the real process
    assert supervisor.is_running(http_server)


def test_stop_ends_the_process_and_frees_its_port(http_server):
    assert supervisor.wait_healthy(http_server)
    assert http_server.port in _listening_ports()
    supervisor.stop(http_server)
    assert not supervisor.is_running(http_server)
    assert not supervisor.healthy(http_server)
    # Free: nothing listens on it any more. (Binding it again proves less: under xdist,
    # another test's client connection may hold that very port as its ephemeral one, and CI
    # once saw the bind fail so; a connection attempt may even connect the port to itself.)
    assert http_server.port not in _listening_ports()


def _listening_ports() -> set[int]:
    """The local TCP ports in LISTEN state (0A), as the kernel lists them."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def test_a_process_that_exits_is_not_running(tmp_path):
    record = supervisor.start([sys.executable, "-c", "pass"], tmp_path, {}, tmp_path / "log")
    deadline = time.monotonic() + 10
    while supervisor.is_running(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not supervisor.is_running(record)  # exited, and the zombie was reaped


@pytest.fixture
def process_named_in_bytes():
    """A process that renamed itself (/proc/self/comm) with bytes that are not UTF-8, as
    any workspace's code may: its name is in its /proc/<pid>/stat and status."""
    rename = (
        "import time\n"
        "open('/proc/self/comm', 'wb').write(b'\\xff\\xfe\\xfd')\n"
        "print('renamed', flush=True)\n"
        "time.sleep(120)\n"
    )
    renamed = subprocess.Popen([sys.executable, "-c", rename], stdout=subprocess.PIPE)
    try:
        assert renamed.stdout.readline() == b"renamed\n"
        yield renamed
    finally:
        renamed.kill()
        renamed.wait()


def test_a_process_named_with_bytes_that_are_not_utf8_keeps_no_other_from_stopping(
    tmp_path, process_named_in_bytes
):
    # Stopping reads every process's /proc/<pid>/stat for the members of the session it ends.
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    record = supervisor.start(argv, tmp_path, {}, tmp_path / "log", holder="ws-other")
    try:
        assert supervisor.is_running(record)
        supervisor.stop(record)
        assert not supervisor.is_running(record)
    finally:
        supervisor.stop(record)


def test_a_process_named_with_bytes_that_are_not_utf8_is_still_counted_by_its_uid(
    process_named_in_bytes,
):
    """Finding a workspace's processes by uid (to end them, or to know a uid is free)
    reads every process's /proc/<pid>/status, whose Name line is the process's choice."""
    assert os.getuid() in set(isolation._process_uids())
