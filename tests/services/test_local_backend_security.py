"""The local services backend trusts nothing in the workspace's directory (issue 11, 2).

A workspace runs untrusted code as its own uid and owns its directory, so it can replace
any file the backend uses there: its environment file, a service's log, the launch file an
earlier version read back, a service's process record. Each test plants what an attacker
would and checks that the portal neither reads, writes, deletes, fetches nor signals
anything outside the workspace because of it.
"""

import http.server
import json
import sys
import threading

import pytest

from pools import supervisor
from services import components
from services.backends.base import FAILED, READY, ComponentContext
from services.backends.local import (
    LOG_FILE,
    PROCESS_FILE,
    SERVICES_DIR,
    LocalServices,
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
    """An HTTP server on 127.0.0.1 that notes every path asked of it."""

    def __init__(self):
        self.paths = []
        seen = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.path)
                self.send_response(200)
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
