"""Issue 11, finding 2: a local workspace's processes cannot reach the portal or each other.

These start real processes through the local driver and the supervisor, the way a
workspace's own process and its services' processes start, and let them try.
"""

import ctypes
import errno
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from pools import isolation, relay, supervisor
from pools.drivers import driver_for
from pools.drivers.base import WorkspaceSpec
from tests.workspace_fixtures import forget_host_resources, wait_for

pytestmark = pytest.mark.django_db

# What a hostile job does; each attempt prints "ok" or the error it met.
ATTEMPTS = r"""
import json, os, signal, sys
key, database, other, portal_pid, sleeper_pid = sys.argv[1:]
result = {"uid": os.getuid()}
def attempt(name, action):
    try:
        action()
        result[name] = "ok"
    except OSError as error:
        result[name] = type(error).__name__
attempt("key", lambda: open(key).read())
attempt("database", lambda: open(database, "rb").read())
attempt("other_workspace_list", lambda: os.listdir(other))
attempt("other_workspace_file", lambda: open(os.path.join(other, "notebook.ipynb")).read())
attempt("signal_portal", lambda: os.kill(int(portal_pid), 0))
attempt("terminate_portal_process", lambda: os.kill(int(sleeper_pid), signal.SIGTERM))
attempt("own_workspace", lambda: open("mine.txt", "w").write("mine"))
result["environment"] = sorted(k for k in os.environ if "SECRET" in k or "DATABASE" in k)
result["token"] = os.environ.get("JOBRUNNER_TOKEN")
print("RESULT " + json.dumps(result), flush=True)
"""


@pytest.fixture
def data_dir(settings, tmp_path, monkeypatch):
    """The portal's data directory laid out as in production: keys, SQLite database and
    the workspaces root inside it."""
    data = tmp_path / "var"
    data.mkdir()
    (data / "encryption_key").write_text("the-portal-encryption-key\n")
    (data / "encryption_key").chmod(0o600)
    (data / "portal.sqlite3").write_bytes(b"SQLite format 3\x00 the portal's database")
    (data / "portal.sqlite3").chmod(0o644)  # as sqlite3 makes it
    settings.DATA_DIR = data
    settings.WORKSPACES_ROOT = data / "workspaces"
    monkeypatch.setenv("PORTAL_WORKSPACES_ROOT", str(data / "workspaces"))
    yield data
    supervisor.stop_registered_below(data / "workspaces")  # what a test left running
    forget_host_resources(data / "workspaces")


@pytest.fixture
def driver(local_infrastructure, data_dir):
    return driver_for(local_infrastructure)


@pytest.fixture
def cpu_profile(local_infrastructure, profile_factory):
    return profile_factory(local_infrastructure, "Starter")


@pytest.fixture
def portal_process():
    """A process of the portal's (its user, its session) for a workspace to try to kill."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


def spec(profile, name):
    return WorkspaceSpec.from_profile(name, "mia", profile)


def run_to_end(record, directory) -> dict:
    wait_for(lambda: not supervisor.is_running(record), timeout=30, what="the job to end")
    log = (directory / "process.log").read_text()
    line = next(x for x in log.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_a_workspace_process_cannot_read_the_key_the_database_or_another_workspace_nor_signal_the_portal(  # noqa: E501
    driver, cpu_profile, data_dir, portal_process
):
    assert isolation.host_capability().isolated, isolation.host_capability().description
    mine, other = spec(cpu_profile, "ws-1"), spec(cpu_profile, "ws-2")
    driver.provision(mine)
    driver.provision(other)
    other_dir = driver.directory("ws-2")
    (other_dir / "notebook.ipynb").write_text('{"cells": ["their work"]}')
    (other_dir / "notebook.ipynb").chmod(0o644)

    argv = [
        sys.executable,
        "-c",
        ATTEMPTS,
        str(data_dir / "encryption_key"),
        str(data_dir / "portal.sqlite3"),
        str(other_dir),
        str(os.getpid()),
        str(portal_process.pid),
    ]
    record = driver.start_process(mine, argv)
    result = run_to_end(record, driver.directory("ws-1"))

    assert result["key"] != "ok"
    assert result["database"] != "ok"
    assert result["other_workspace_list"] != "ok"
    assert result["other_workspace_file"] != "ok"
    assert result["signal_portal"] != "ok"
    assert result["terminate_portal_process"] != "ok"
    assert portal_process.poll() is None  # still running
    # It is not crippled: its own directory is its own, and the portal's secrets are not
    # in its environment.
    assert result["own_workspace"] == "ok"
    assert (driver.directory("ws-1") / "mine.txt").read_text() == "mine"
    assert result["environment"] == []
    if os.geteuid() == 0:
        assert result["uid"] == isolation.identity_of(driver.directory("ws-1")) != 0


@pytest.mark.skipif(os.geteuid() != 0, reason="a uid per workspace needs a root portal")
def test_each_workspace_owns_its_directory_under_a_uid_of_its_own(driver, cpu_profile):
    driver.provision(spec(cpu_profile, "ws-1"))
    driver.provision(spec(cpu_profile, "ws-2"))
    driver.provision(spec(cpu_profile, "ws-1"))  # again: the same uid

    first = os.stat(driver.directory("ws-1"))
    second = os.stat(driver.directory("ws-2"))
    low, high = isolation.uid_range()
    assert low <= first.st_uid <= high and low <= second.st_uid <= high
    assert first.st_uid != second.st_uid
    assert first.st_gid == first.st_uid
    assert first.st_mode & 0o777 == second.st_mode & 0o777 == 0o700
    root = os.stat(driver.directory("ws-1").parent)
    assert root.st_uid == 0 and root.st_mode & 0o077 == 0


def test_a_services_process_started_below_the_workspace_is_isolated_too(
    driver, cpu_profile, data_dir, portal_process
):
    """The services backend calls `supervisor.start` with a directory of the workspace and
    nothing else: the isolation comes from the directory."""
    driver.provision(spec(cpu_profile, "ws-1"))
    driver.provision(spec(cpu_profile, "ws-2"))
    service_dir = driver.directory("ws-1") / "services" / "job-queue"
    service_dir.mkdir(parents=True)  # made by the portal, as the services backend does
    argv = [
        sys.executable,
        "-c",
        ATTEMPTS,
        str(data_dir / "encryption_key"),
        str(data_dir / "portal.sqlite3"),
        str(driver.directory("ws-2")),
        str(os.getpid()),
        str(portal_process.pid),
    ]
    env = dict(os.environ) | {"JOBRUNNER_TOKEN": "the-service's"}
    assert "SECRET_KEY" in env  # the test settings put it in the portal's environment
    record = supervisor.start(argv, service_dir, env, service_dir / "process.log")
    record.save(service_dir / "process.json")
    result = run_to_end(record, service_dir)

    for name in ("key", "database", "other_workspace_list", "signal_portal"):
        assert result[name] != "ok", name
    assert result["own_workspace"] == "ok"  # its data lives in its own directory
    assert result["environment"] == []
    assert result["token"] == "the-service's"
    assert portal_process.poll() is None
    row = supervisor.SupervisedProcess.objects.get(pid=record.pid)
    assert row.holder == "ws-1" and row.sandboxed
    assert row.infrastructure == driver.infrastructure


def test_stopping_a_sandboxed_process_ends_everything_it_started(driver, cpu_profile):
    """Even what left the session inside the sandbox (setsid), or ignores SIGTERM."""
    driver.provision(spec(cpu_profile, "ws-1"))
    escape = (
        "import os, signal, subprocess, time\n"
        "subprocess.Popen(['setsid', 'sleep', '299.5'])\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    record = driver.start_process(spec(cpu_profile, "ws-1"), [sys.executable, "-c", escape])
    log = driver.directory("ws-1") / "process.log"
    wait_for(lambda: "started" in log.read_text(), timeout=20, what="the job to start")
    # A duration of its own: other tests, run at the same time, start `sleep 300`.
    sleepers = _processes_named("sleep 299.5")
    assert sleepers

    supervisor.stop(record, timeout=1)

    assert not supervisor.is_running(record)
    wait_for(lambda: not (set(_processes_named("sleep 299.5")) & set(sleepers)), timeout=10)


def test_the_host_says_why_it_cannot_isolate_when_isolation_is_off(settings):
    settings.LOCAL_WORKSPACE_ISOLATION = "off"
    capability = isolation.host_capability()
    assert not capability.isolated
    assert "LOCAL_WORKSPACE_ISOLATION=off" in capability.description


def test_an_administrator_can_give_workspaces_the_hosts_network_and_is_told_so(settings, data_dir):
    """For workspaces that must download (pip, models): isolated otherwise, not on the
    network, and the infrastructure's status says what they can reach."""
    settings.LOCAL_WORKSPACE_NETWORK = "host"
    capability = isolation.host_capability()
    assert capability.isolated and not capability.own_network
    assert "network is shared with the host" in capability.description
    assert "LOCAL_WORKSPACE_NETWORK=host" in capability.description
    assert isolation.network_prefix(data_dir / "workspaces" / "ws-1") == []


def test_without_isolation_a_workspace_process_runs_as_before(
    settings, driver, cpu_profile, data_dir
):
    settings.LOCAL_WORKSPACE_ISOLATION = "off"
    driver.provision(spec(cpu_profile, "ws-1"))
    record = driver.start_process(
        spec(cpu_profile, "ws-1"), [sys.executable, "-c", "import os; print('uid', os.getuid())"]
    )
    wait_for(lambda: not supervisor.is_running(record), timeout=20, what="the job to end")
    assert f"uid {os.geteuid()}" in (driver.directory("ws-1") / "process.log").read_text()
    assert not record.sandboxed


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_the_sandbox_hides_a_sqlite_database_outside_the_data_directory(settings, tmp_path):
    database = tmp_path / "elsewhere.sqlite3"
    database.write_bytes(b"x")
    settings.DATABASES = {
        "default": dict(settings.DATABASES["default"], ENGINE="django.db.backends.sqlite3")
        | {"NAME": str(database)}
    }
    argv = isolation.sandbox_argv(["true"], tmp_path / "ws-1", tmp_path / "ws-1", None, tmp_fd=3)
    assert ["--ro-bind", "/dev/null", str(database)] == argv[
        argv.index(str(database)) - 2 : argv.index(str(database)) + 1
    ]


def _processes_named(command: str) -> list[int]:
    return [pid for pid, line in _command_lines().items() if line == command]


def _command_lines() -> dict[int, str]:
    """Every process's command line, its arguments joined by spaces."""
    lines = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read().replace(b"\0", b" ")
            except OSError:
                continue
            lines[int(entry)] = cmdline.decode(errors="replace").strip()
    return lines


def test_a_link_the_workspace_planted_leads_the_portal_nowhere(driver, cpu_profile, tmp_path):
    """`services` replaced by a link to a directory of the portal's: nothing is started,
    written or handed over there."""
    driver.provision(spec(cpu_profile, "ws-1"))
    elsewhere = tmp_path / "portal-directory"
    (elsewhere / "job-queue").mkdir(parents=True)
    (driver.directory("ws-1") / "services").symlink_to(elsewhere)
    service_dir = driver.directory("ws-1") / "services" / "job-queue"

    with pytest.raises(OSError):
        supervisor.start([sys.executable, "-c", "pass"], service_dir, {}, service_dir / "log")
    with pytest.raises(OSError):
        supervisor.write_file(service_dir / "process.json", "{}")
    with pytest.raises(OSError):
        supervisor.read_file(service_dir / "process.json")

    assert list(elsewhere.rglob("*")) == [elsewhere / "job-queue"]
    assert os.stat(elsewhere / "job-queue").st_uid == os.geteuid()
    assert not supervisor.SupervisedProcess.objects.exists()


# What a job tries on the network: "ok" or the error it met.
NETWORK_ATTEMPTS = r"""
import json, socket, sys
portal, own_service, other_service, unix_path = sys.argv[1:]
result = {}
def attempt(name, address, family=socket.AF_INET):
    try:
        with socket.socket(family) as sock:
            sock.settimeout(3)
            sock.connect(address)
        result[name] = "ok"
    except OSError as error:
        result[name] = type(error).__name__
attempt("portal", ("127.0.0.1", int(portal)))
attempt("own_service", ("127.0.0.1", int(own_service)))
attempt("other_workspace_service", ("127.0.0.1", int(other_service)))
attempt("host_unix_socket", unix_path, socket.AF_UNIX)
print("RESULT " + json.dumps(result), flush=True)
"""


def serve_http(directory, port):
    """A service of the workspace: an HTTP server on `port`, as the services backend
    starts one (the supervisor serves the port on the host)."""
    directory.mkdir(parents=True)
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    record = supervisor.start(argv, directory, {}, directory / "process.log", port=port)
    assert supervisor.wait_healthy(record, timeout=20), (directory / "process.log").read_text()
    return record


@pytest.fixture
def host_services(tmp_path):
    """The portal's port and a Unix socket under /run, as PostgreSQL has one."""
    with socket.socket() as portal, socket.socket(socket.AF_UNIX) as unix:
        portal.bind(("127.0.0.1", 0))
        portal.listen()
        path = f"/run/portal-test-{os.getpid()}.sock"
        unix.bind(path)
        unix.listen()
        try:
            yield portal.getsockname()[1], path
        finally:
            os.unlink(path)


def test_a_workspace_reaches_its_own_services_and_nothing_else_on_the_network(
    driver, cpu_profile, host_services
):
    assert isolation.host_capability().own_network, isolation.host_capability().description
    portal_port, unix_path = host_services
    driver.provision(spec(cpu_profile, "ws-1"))
    driver.provision(spec(cpu_profile, "ws-2"))
    own_port, other_port = supervisor.free_port(), supervisor.free_port()
    serve_http(driver.directory("ws-1") / "services" / "web", own_port)
    serve_http(driver.directory("ws-2") / "services" / "web", other_port)

    argv = [sys.executable, "-c", NETWORK_ATTEMPTS, str(portal_port), str(own_port)]
    record = driver.start_process(spec(cpu_profile, "ws-1"), [*argv, str(other_port), unix_path])
    result = run_to_end(record, driver.directory("ws-1"))

    assert result == {
        "portal": "ConnectionRefusedError",
        "own_service": "ok",
        "other_workspace_service": "ConnectionRefusedError",
        "host_unix_socket": "FileNotFoundError",
    }
    # Both services still answer on the host, where the portal and the user reach them.
    for port in (own_port, other_port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200
    # Deleting the workspace removes its network namespace.
    network = isolation.NETNS_DIR / isolation.network_name(driver.directory("ws-1"))
    assert network.exists()
    driver.deprovision(spec(cpu_profile, "ws-1"))
    assert not network.exists()


LATE_SERVER = r"""
import socket, sys, time
time.sleep(float(sys.argv[2]))  # starting up
with socket.socket() as server:
    server.bind(("127.0.0.1", int(sys.argv[1])))
    server.listen()
    while True:  # answers each connection's message in capitals; "stop" ends it
        connection, _ = server.accept()
        message = connection.recv(100)
        connection.sendall(message.upper())
        connection.close()
        if message == b"stop":
            break
"""


def test_a_service_port_is_refused_until_the_service_answers_and_closes_when_it_ends(
    driver, cpu_profile
):
    """The relay listens on the host only once the service is up, so the portal's health
    checks see what they saw before workspaces had networks of their own."""
    assert isolation.host_capability().own_network, isolation.host_capability().description
    driver.provision(spec(cpu_profile, "ws-1"))
    directory = driver.directory("ws-1") / "services" / "late"
    directory.mkdir(parents=True)
    port = supervisor.free_port()
    argv = [sys.executable, "-c", LATE_SERVER, str(port), "5"]
    record = supervisor.start(argv, directory, {}, directory / "process.log", port=port)

    wait_for(lambda: _relay_running(port), timeout=10, what="the relay")
    time.sleep(0.5)  # the relay has started the service, which takes 5 s to start up
    assert not supervisor.healthy(record)  # refused, not accepted and then reset
    assert supervisor.wait_healthy(record, timeout=20)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"hello")
        assert client.recv(100) == b"HELLO"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"stop")
        assert client.recv(100) == b"STOP"
    wait_for(lambda: not supervisor.is_running(record), timeout=10, what="the service to end")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def _relay_running(port: int) -> bool:
    return any(
        str(isolation.RELAY) in command and str(port) in command
        for command in _command_lines().values()
    )


# A service's code going for its relay's socket of the host's network: the relay is its
# parent (same uid, same PID namespace), the socket's number is on the relay's command
# line, and the socket is not listening yet, so it could be connected to any port of the
# host's loopback. With a user and a database name it then talks to PostgreSQL there.
TAKE_THE_RELAYS_SOCKET = r"""
import ctypes, json, os, socket, stat, struct, sys
port, *login = sys.argv[1:]
result = {}
relay = os.getppid()
argv = open(f"/proc/{relay}/cmdline", "rb").read().split(b"\0")
host_fd = int(argv[next(i for i, a in enumerate(argv) if a.endswith(b"relay.py")) + 1])
try:
    result["inherited"] = stat.S_ISSOCK(os.fstat(host_fd).st_mode)
except OSError:
    result["inherited"] = False
try:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(438, os.pidfd_open(relay), host_fd, 0)  # pidfd_getfd(2)
    if fd < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    taken = socket.socket(fileno=fd)
    taken.settimeout(3)
    taken.connect(("127.0.0.1", int(port)))  # the host's loopback
    if login:
        body = struct.pack("!I", 196608) + b"user\0" + login[0].encode() + b"\0"
        body += b"database\0" + login[1].encode() + b"\0\0"
        taken.sendall(struct.pack("!I", len(body) + 4) + body)
        result["database_answer"] = taken.recv(9).hex()
    else:
        taken.sendall(b"hello from inside the workspace")
    result["host_loopback"] = "ok"
except OSError as error:
    result["host_loopback"] = f"{type(error).__name__}: {error}"
print("RESULT " + json.dumps(result), flush=True)
"""


def take_the_relays_socket(driver, cpu_profile, *argv: str) -> dict:
    """What a service's code got when it went for its relay's host socket."""
    driver.provision(spec(cpu_profile, "ws-1"))
    directory = driver.directory("ws-1") / "services" / "web"
    directory.mkdir(parents=True)
    command = [sys.executable, "-c", TAKE_THE_RELAYS_SOCKET, *argv]
    record = supervisor.start(
        command, directory, {}, directory / "process.log", port=supervisor.free_port()
    )
    return run_to_end(record, directory)


def test_a_service_cannot_take_its_relays_host_socket_to_reach_the_hosts_loopback(
    driver, cpu_profile
):
    assert isolation.host_capability().own_network, isolation.host_capability().description
    with socket.socket() as portal:  # the portal, or any service on the host's loopback
        portal.bind(("127.0.0.1", 0))
        portal.listen()
        result = take_the_relays_socket(driver, cpu_profile, str(portal.getsockname()[1]))

        assert result["inherited"] is False
        # The relay is undumpable: the kernel refuses to copy its socket.
        assert result["host_loopback"].startswith("PermissionError"), result
        portal.settimeout(1)
        with pytest.raises(TimeoutError):  # nothing from the workspace reached the host
            portal.accept()


def test_a_service_cannot_reach_the_portals_database_through_its_relay(
    driver, cpu_profile, settings
):
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3") or database.get("HOST") not in (
        "127.0.0.1",
        "localhost",
    ):
        pytest.skip("needs the portal's PostgreSQL on this host's loopback")
    assert isolation.host_capability().own_network, isolation.host_capability().description
    port = str(database.get("PORT") or 5432)
    result = take_the_relays_socket(driver, cpu_profile, port, database["USER"], database["NAME"])

    assert result["host_loopback"].startswith("PermissionError"), result
    assert "database_answer" not in result


def test_a_relay_that_cannot_make_itself_undumpable_does_not_run(monkeypatch, tmp_path):
    """Its service would be free to take the relay's host socket: better no service."""

    class Refusing:
        def prctl(self, *args):
            ctypes.set_errno(errno.EPERM)
            return -1

    monkeypatch.setattr(relay.ctypes, "CDLL", lambda *args, **kwargs: Refusing())
    started = tmp_path / "started"
    with socket.socket() as host_port:
        argv = [str(host_port.fileno()), "8000", "--", "touch", str(started)]
        with pytest.raises(SystemExit, match=r"cannot make itself undumpable \(Operation not"):
            relay.main(argv)
        with pytest.raises(SystemExit, match="cannot make itself undumpable"):
            relay.main(["--egress", str(host_port.fileno())])
    assert not started.exists()


def test_the_administrators_shell_is_in_the_workspaces_network(driver, cpu_profile, tmp_path):
    """Where a port no relay serves (a Ray cluster's many) answers: not on the host."""
    assert isolation.host_capability().own_network, isolation.host_capability().description
    workspace = spec(cpu_profile, "ws-1")
    driver.provision(workspace)
    inner = supervisor.free_port()  # served inside the workspace only: no port= for it
    directory = driver.directory("ws-1") / "services" / "inner"
    directory.mkdir(parents=True)
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(inner)]
    record = supervisor.start(argv, directory, {}, directory / "process.log")
    probe = tmp_path / "probe"  # what the administrator types, as a script
    probe.write_text(
        f"#!{sys.executable}\n"
        "import time, urllib.request\n"
        "for _ in range(100):  # while the server starts\n"
        "    try:\n"
        f"        print(urllib.request.urlopen('http://127.0.0.1:{inner}/').status)\n"
        "        break\n"
        "    except OSError as error:\n"
        "        print(error)\n"
        "        time.sleep(0.2)\n"
    )
    probe.chmod(0o755)
    shell = driver.status(workspace).connection["shell"]

    done = subprocess.run(
        ["bash", "-c", shell],
        env=dict(os.environ, SHELL=str(probe)),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.stdout.strip().endswith("200"), done.stdout + done.stderr
    assert supervisor.is_running(record)
    with pytest.raises(ConnectionRefusedError):  # on the host: nothing there
        socket.create_connection(("127.0.0.1", inner), timeout=5)
