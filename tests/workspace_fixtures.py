"""Fixtures shared by the workspace, pool and browser tests (imported by their conftests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections

from pools import cgroups, isolation, lifetime
from pools.lifecycle import State
from pools.models import Workspace
from portal import notifications
from profiles.choices import HealthStatus, InfrastructureKind
from profiles.models import Infrastructure


@dataclass(frozen=True)
class FakeMig:
    uuid: str
    profile: str
    gpu_instance_id: int
    compute_instance_id: int = 0


@dataclass(frozen=True)
class FakeGpu:
    index: int
    uuid: str
    name: str
    gpu_model: str | None
    mig_devices: tuple = field(default_factory=tuple)

    @property
    def minor(self) -> int:
        return self.index

    @property
    def mig_enabled(self) -> bool:
        return bool(self.mig_devices)


FAKE_GPUS = [
    FakeGpu(0, "GPU-aaaa", "NVIDIA A100-SXM4-40GB", "A100-40GB"),
    FakeGpu(
        1,
        "GPU-bbbb",
        "NVIDIA A100-SXM4-40GB",
        "A100-40GB",
        (
            FakeMig("MIG-b1", "1g.5gb", 1),
            FakeMig("MIG-b2", "1g.5gb", 2),
            FakeMig("MIG-b3", "3g.20gb", 3),
        ),
    ),
]
# /proc/driver/nvidia-caps/mig-minors for FAKE_GPUS: which capability nodes grant access to
# each MIG device (pools.devices).
FAKE_MIG_MINORS = "".join(
    f"gpu1/gi{gi}/access {10 * gi}\ngpu1/gi{gi}/ci0/access {10 * gi + 1}\n" for gi in (1, 2, 3)
)


@pytest.fixture
def workspaces_root(settings, tmp_path, monkeypatch):
    root = tmp_path / "workspaces"
    settings.WORKSPACES_ROOT = root
    monkeypatch.setenv("PORTAL_WORKSPACES_ROOT", str(root))
    yield root
    forget_host_resources(root)


def forget_host_resources(root: Path) -> None:
    """Remove the network namespaces and control groups of the workspaces left under
    `root`: the host keeps them per workspace directory (pools.isolation, pools.cgroups)
    until the workspace is deprovisioned."""
    if root.is_dir():
        for directory in root.iterdir():
            isolation.forget_network(directory)
            cgroups.forget(directory)


@pytest.fixture
def fake_gpus(monkeypatch, tmp_path_factory):
    """Two A100s: GPU 0 whole, GPU 1 partitioned into 1g.5gb, 1g.5gb and 3g.20gb."""
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: list(FAKE_GPUS))
    mig_minors = tmp_path_factory.mktemp("nvidia-caps") / "mig-minors"
    mig_minors.write_text(FAKE_MIG_MINORS)
    monkeypatch.setattr("pools.devices.MIG_MINORS", mig_minors)
    return FAKE_GPUS


@pytest.fixture
def starter(local_infrastructure, profile_factory):
    return profile_factory(local_infrastructure, "Starter", published=True)


@pytest.fixture
def workspace_factory(db):
    def make(owner, profile, state=State.REQUESTED, **fields):
        return Workspace.objects.create(
            owner=owner,
            profile=profile,
            infrastructure=profile.infrastructure,
            state=state,
            **fields,
        )

    return make


@pytest.fixture
def kubernetes_cluster(db) -> Infrastructure:
    """A ready Kubernetes infrastructure the portal reaches from inside the cluster (for
    tests that count and check, asking no API server anything)."""
    return Infrastructure.objects.create(
        name="Cluster",
        kind=InfrastructureKind.KUBERNETES,
        in_cluster=True,
        health_status=HealthStatus.READY,
    )


@pytest.fixture
def sync_tasks(monkeypatch):
    """Run django-q2 tasks in-process when enqueued (ordering is all these tests need)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


def in_thread(action, refusal: type[Exception], results: list) -> threading.Thread:
    """Run `action` in a thread of its own, on its own database connection (another request
    at the same moment); `results` gets "ok", or the message of the `refusal` it raised."""

    def run():
        try:
            action()
            results.append("ok")
        except refusal as refused:
            results.append(str(refused))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def shared_database(transactional_db, tmp_path):
    """A test database another process (a django-q2 worker) can open too.

    PostgreSQL's test database already is one. pytest-django's SQLite test database lives
    in memory, so for SQLite this puts a migrated file database in its place for the test,
    and back after. Like Django's in-memory test database, its one connection is never
    closed between requests and is shared with the live server's threads
    (`live_server_on_shared_database`).
    """
    original = connections["default"]
    if original.vendor != "sqlite":
        yield original.settings_dict
        return
    file_settings = dict(original.settings_dict, NAME=str(tmp_path / "shared.sqlite3"))
    wrapper = type(original)(file_settings, "default")
    wrapper.is_in_memory_db = lambda: True  # keep it open, let the live server share it
    wrapper.memory_original = original
    connections["default"] = wrapper
    try:
        call_command("migrate", verbosity=0)
        yield file_settings
    finally:
        del wrapper.is_in_memory_db
        wrapper.inc_thread_sharing()  # the live server's threads may have used it
        wrapper.close()
        connections["default"] = original


@pytest.fixture
def live_server_on_shared_database(shared_database, live_server):
    """The live server, answering from `shared_database` for this test only.

    With SQLite the (session-wide) live server shares one connection with the test thread;
    point it at the file database for the test, then back at the in-memory one.
    """
    overrides = live_server.thread.connections_override
    if "default" not in overrides:  # PostgreSQL: every thread opens its own connection
        yield live_server
        return
    wrapper = connections["default"]
    memory = wrapper.memory_original
    previous = overrides["default"]
    if previous is not wrapper:
        wrapper.inc_thread_sharing()
        overrides["default"] = wrapper
    try:
        yield live_server
    finally:
        if previous is wrapper:  # the server started during this test, with our wrapper
            previous = memory
            memory.inc_thread_sharing()
        overrides["default"] = previous
        time.sleep(0.5)  # let a request still being answered finish with the file database


def database_url(settings_dict) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "localhost"
    port = settings_dict.get("PORT") or 5432
    return f"postgresql://{auth}{host}:{port}/{settings_dict['NAME']}"


def _wait_for_group_exit(pgid: int, timeout: float = 15) -> None:
    """Wait until every process of the cluster (and its database connections) is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture
def qcluster(shared_database, workspaces_root, tmp_path):
    """A real `manage.py qcluster` process working on the test database."""
    log_path = tmp_path / "qcluster.log"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(shared_database),
        PORTAL_WORKSPACES_ROOT=str(workspaces_root),
        PORTAL_DATA_DIR=str(settings.DATA_DIR),
        Q_WORKERS="2",
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        _wait_for_group_exit(process.pid)
        output = Path(log_path).read_text(errors="replace")
        print("---- qcluster log ----\n" + output[-5000:])


def warn_of_expiry(workspace: Workspace) -> None:
    """Warn its owner of its current expiry, as `lifetime.warn_expiring` would: the sweep
    deletes only a workspace whose owner was warned (`pools.tasks.expire_one`)."""
    workspace.refresh_from_db()
    notifications.notify([workspace.owner], lifetime.expiry_message(workspace))
