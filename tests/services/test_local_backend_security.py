"""The local services backend trusts nothing in the workspace's directory (issue 11, 2).

A workspace runs untrusted code as its own uid and owns its directory, so it can replace
any file the backend uses there: its environment file, a service's log, the launch file an
earlier version read back, a service's process record. Each test plants what an attacker
would and checks that the portal neither reads, writes, deletes, fetches nor signals
anything outside the workspace because of it. The same goes for what answers on a
component's port, which the workspace's code may serve.
"""

import http.server
import json
import socket
import sys
import threading
import time
import urllib.request
from http import HTTPStatus

import pytest

from pools import supervisor
from services import components
from services.backends.base import FAILED, READY, ComponentContext
from services.backends.local import (
    LOG_FILE,
    PROCESS_FILE,
    SERVICES_DIR,
    LocalServices,
    health_ok,
    stop_all,
)
from tests.workspace_fixtures import wait_for

pytestmark = pytest.mark.django_db

SECRET = "the-portal-encryption-key-material"


@pytest.fixture
def backend(local_infrastructure):
    return LocalServices(local_infrastructure)


@pytest.fixture
def queue_ctx(ready_workspace):
    found = components.component("job-queue")
    return ComponentContext(
        spec=ready_workspace.spec(),
        component=found,
        version=found.default_version,
        parameters=found.resolve({}),
    )


@pytest.fixture
def component_dir(ready_workspace, workspaces_root):
    directory = workspaces_root / ready_workspace.resource_name / SERVICES_DIR / "job-queue"
    directory.mkdir(parents=True)
    return directory


@pytest.fixture
def secret_file(tmp_path):
    """A file of the portal's, outside every workspace (say var/encryption_key)."""
    path = tmp_path / "encryption_key"
    path.write_text(f"{SECRET}\nPORTAL_KEY={SECRET}\n")
    return path


@pytest.fixture
def spy_start(monkeypatch):
    """Record what `supervisor.start` is asked to run, and start nothing."""
    calls = []

    def start(argv, cwd, env, log_path, port=None, **kwargs):
        calls.append({"argv": argv, "env": env, "port": port})
        raise OSError("not started by this test")

    monkeypatch.setattr(supervisor, "start", start)
    return calls


class Listener:
    """An HTTP server on 127.0.0.1 that notes every path asked of it, and answers each
    with `status` and `headers`."""

    def __init__(self, status: int = HTTPStatus.OK, headers: dict | None = None):
        self.paths = []
        seen = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.path)
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def test_an_environment_file_linked_to_a_portal_secret_leaks_nothing(
    backend, queue_ctx, ready_workspace, workspaces_root, secret_file, spy_start
):
    env_file = workspaces_root / ready_workspace.resource_name / "workspace.env"
    env_file.unlink()
    env_file.symlink_to(secret_file)

    result = backend.deploy(queue_ctx)

    assert result.status == FAILED  # the spy started nothing
    (call,) = spy_start
    assert not any(SECRET in key or SECRET in value for key, value in call["env"].items())
    # The workspace's own variables come from the database all the same.
    assert call["env"]["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa"
    assert call["env"]["WORKSPACE_NAME"] == ready_workspace.resource_name


def test_a_log_linked_to_a_portal_file_is_neither_shown_nor_written(
    backend, queue_ctx, component_dir, secret_file
):
    before = secret_file.read_text()
    (component_dir / LOG_FILE).symlink_to(secret_file)

    result = backend.deploy(queue_ctx)

    assert SECRET not in result.log_tail
    assert secret_file.read_text() == before  # no start header appended through the link
    assert SECRET not in backend.check(queue_ctx).log_tail
    assert not supervisor.ProcessRecord.registered_at(component_dir / PROCESS_FILE)


def test_a_log_replaced_by_a_link_while_the_service_runs_shows_nothing_foreign(
    backend, queue_ctx, component_dir, secret_file
):
    backend.deploy(queue_ctx)
    record = supervisor.ProcessRecord.registered_at(component_dir / PROCESS_FILE)
    assert record is not None and supervisor.is_running(record)
    (component_dir / LOG_FILE).unlink()
    (component_dir / LOG_FILE).symlink_to(secret_file)

    assert SECRET not in backend._tail(queue_ctx)
    assert SECRET not in backend.check(queue_ctx).log_tail


def test_a_forged_launch_file_makes_the_portal_delete_nothing_outside(
    backend, queue_ctx, ready_workspace, component_dir, workspaces_root, tmp_path
):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    forged = json.dumps({"temp_dir": str(precious)})

    backend.deploy(queue_ctx)
    (component_dir / "launch.json").write_text(forged)  # after the portal wrote its own
    backend.remove(queue_ctx)
    backend.deploy(queue_ctx)
    (component_dir / "launch.json").write_text(forged)
    stop_all(workspaces_root / ready_workspace.resource_name)
    backend.deploy(queue_ctx)
    (component_dir / "launch.json").write_text(forged)
    backend.remove_all(ready_workspace.spec())

    assert (precious / "data").read_text() == "keep me"


def test_a_forged_launch_file_makes_the_portal_fetch_no_other_url(
    backend, queue_ctx, component_dir, listener
):
    result = backend.deploy(queue_ctx)
    record = supervisor.ProcessRecord.registered_at(component_dir / PROCESS_FILE)
    assert record is not None and supervisor.is_running(record)
    forged = {
        "health_url": f"http://127.0.0.1:{listener.port}/steal",
        "port": listener.port,
        "endpoints": [{"name": "forged", "url": f"http://127.0.0.1:{listener.port}/"}],
    }
    (component_dir / "launch.json").write_text(json.dumps(forged))

    def ready():
        nonlocal result
        result = backend.check(queue_ctx)
        return result.status == READY

    wait_for(ready, timeout=30, what="the jobs queue to answer on its own port")
    assert listener.paths == []
    assert [e["url"] for e in result.endpoints] == [f"http://127.0.0.1:{record.port}/jobs"]


def test_a_forged_process_record_naming_a_registered_process_stops_nothing(
    backend, queue_ctx, component_dir, tmp_path
):
    """A record file that names another registered process (say another workspace's)."""
    bystander = supervisor.start(
        [sys.executable, "-c", "import time; time.sleep(300)"],
        tmp_path,
        {},
        tmp_path / "bystander.log",
    )
    try:
        forged = {"pid": bystander.pid, "start_time": bystander.start_time, "argv": ["x"]}
        (component_dir / PROCESS_FILE).write_text(json.dumps(forged))

        backend.remove(queue_ctx)
        assert backend.check(queue_ctx).status == FAILED  # not taken for the component

        assert supervisor.is_running(bystander)
    finally:
        supervisor.stop(bystander)


def test_a_services_directory_linked_elsewhere_is_not_written_through(
    backend, queue_ctx, ready_workspace, workspaces_root, tmp_path
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (workspaces_root / ready_workspace.resource_name / SERVICES_DIR).symlink_to(elsewhere)

    result = backend.deploy(queue_ctx)

    assert result.status == FAILED
    assert list(elsewhere.iterdir()) == []


# -- the health check: only 127.0.0.1 on the component's port (`local_url`) --------------


def health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/health"


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_health_check_takes_a_2xx_answer_on_the_components_port(listener):
    assert health_ok(health_url(listener.port), listener.port) is True
    assert listener.paths == ["/health"]
    assert health_ok(health_url(listener.port), unused_port()) is False  # another port


def test_the_health_check_does_not_follow_a_redirect_off_the_components_port(listener):
    elsewhere = f"http://127.0.0.1:{listener.port}/admin?x=1"  # another host-side service
    redirect = Listener(HTTPStatus.FOUND, {"Location": elsewhere})
    try:
        answered = health_ok(health_url(redirect.port), redirect.port)
    finally:
        redirect.close()
    assert listener.paths == []
    assert answered is False  # a redirect is not a healthy answer


def test_the_health_check_does_not_go_through_the_portals_http_proxy(listener, monkeypatch):
    """A portal run with HTTP_PROXY (to reach Okta or a cloud API) must not ask its proxy:
    whatever the proxy answers would make a component that is not listening ready."""
    for key in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{listener.port}")
    # urllib's opener reads the proxies once, when first used: as in a portal process
    # started with the variable set.
    monkeypatch.setattr(urllib.request, "_opener", None)
    port = unused_port()

    assert health_ok(health_url(port), port) is False
    assert listener.paths == []


@pytest.mark.parametrize(
    ("first", "then"),
    [(b"HTTP/1.0 200 OK\r\nX-Slow: ", b"a"), (b"HTTP/1.0 2", b"0")],
    ids=["its headers", "its status line"],
)
def test_a_health_answer_trickled_byte_by_byte_does_not_hold_the_worker(first, then):
    """A timeout per read is not enough: a service that sends one byte every half second
    would hold the watcher's (or the deploy task's) worker for as long as it liked."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    stop = threading.Event()

    def trickle():
        connection, _ = server.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(first)
            while not stop.wait(0.5):
                try:
                    connection.sendall(then)
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    threading.Timer(15, stop.set).start()  # the test ends, whatever the check does
    began = time.monotonic()
    try:
        health_ok(health_url(port), port)
    finally:
        stop.set()
        server.close()
    took = time.monotonic() - began
    assert took < 6, f"one health check took {took:.1f} s (its limit is 2 s)"
