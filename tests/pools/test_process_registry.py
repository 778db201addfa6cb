"""Issue 11, finding 8: supervised processes are registered in the database, so none is lost
with its workspace's directory, and a record file the workspace forged signals nothing; a
directory another deprovisioning removed first counts as removed."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pools import isolation, supervisor, tasks
from pools.drivers import driver_for
from pools.drivers.local import PROCESS_FILE
from pools.lifecycle import State
from pools.models import SupervisedProcess, Workspace
from tests.workspace_fixtures import (  # noqa: F401
    starter,
    wait_for,
    workspace_factory,
    workspaces_root,
)

SLEEP = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(300)"]


@pytest.fixture
def workspace(member, starter, workspace_factory, workspaces_root):
    """A ready local workspace with its directory."""
    workspace = workspace_factory(member, starter, state=State.READY)
    driver_for(workspace.infrastructure).provision(workspace.spec())
    return workspace


@pytest.fixture
def driver(workspace):
    return driver_for(workspace.infrastructure)


@pytest.fixture
def bystander():
    """A process of the portal's own, which no workspace may get stopped."""
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def test_a_process_whose_workspace_directory_was_deleted_is_found_and_stopped_by_the_sweep(
    workspace, driver, workspaces_root
):
    record = driver.start_process(workspace.spec(), SLEEP)
    log = driver.directory(workspace.resource_name) / "process.log"
    wait_for(lambda: "ready" in log.read_text(), timeout=20, what="the process to start")
    # The workspace is gone, and its directory with the record file in it, but not the
    # process (a deprovisioning that died half-way, a directory removed by hand).
    Workspace.objects.filter(pk=workspace.pk).update(state=State.DELETED)
    shutil.rmtree(workspaces_root / workspace.resource_name)
    assert supervisor.is_running(record)
    directory = driver.directory(workspace.resource_name)
    network = isolation.NETNS_DIR / isolation.network_name(directory)
    assert network.exists() == isolation.host_capability().own_network

    proxy = supervisor.egress_process(directory)  # its way to the internet, where it has one
    assert (proxy is not None) == isolation.host_capability().egress

    result = tasks.sweep()

    assert not supervisor.is_running(record)
    stopped = [record] + ([proxy] if proxy else [])
    expected = sorted(f"{workspace.resource_name} pid {each.pid}" for each in stopped)
    assert sorted(result["processes_stopped"]) == expected
    assert not SupervisedProcess.objects.exists()
    # Nor its network namespace, where workspaces have one.
    assert not network.exists()


def test_the_sweep_leaves_a_live_workspaces_processes_alone(workspace, driver):
    record = driver.start_process(workspace.spec(), SLEEP)
    try:
        assert tasks.sweep()["processes_stopped"] == []
        assert supervisor.is_running(record)
    finally:
        supervisor.stop(record)


def test_the_registry_holds_a_process_from_its_start_to_its_stop(workspace, driver):
    record = driver.start_process(workspace.spec(), SLEEP)
    row = SupervisedProcess.objects.exclude(record_path__endswith=supervisor.EGRESS_RECORD).get()
    assert (row.pid, row.start_time, row.argv) == (record.pid, record.start_time, SLEEP)
    assert row.holder == workspace.resource_name
    assert row.infrastructure == workspace.infrastructure
    assert row.record_path == str(driver.directory(workspace.resource_name) / PROCESS_FILE)

    supervisor.stop(record)

    assert not SupervisedProcess.objects.filter(pid=record.pid).exists()


def test_a_deleted_record_file_loses_nothing(workspace, driver):
    """The workspace owns its directory: it may delete the record; the portal still knows."""
    directory = driver.directory(workspace.resource_name)
    record = driver.start_process(workspace.spec(), SLEEP)
    (directory / PROCESS_FILE).unlink()

    assert supervisor.ProcessRecord.load(directory / PROCESS_FILE) == record
    assert driver.status(workspace.spec()).detail["pid"] == record.pid
    driver.deprovision(workspace.spec())
    assert not supervisor.is_running(record)


def test_a_forged_record_file_makes_the_portal_signal_nothing(workspace, driver, bystander):
    directory = driver.directory(workspace.resource_name)
    stat = Path(f"/proc/{bystander.pid}/stat").read_text()
    start_time = int(stat[stat.rindex(")") + 2 :].split()[19])
    forged = {"pid": bystander.pid, "start_time": start_time, "argv": ["sleep", "300"]}
    (directory / PROCESS_FILE).write_text(json.dumps(forged))
    (directory / "services" / "jupyterlab").mkdir(parents=True)
    (directory / "services" / "jupyterlab" / PROCESS_FILE).write_text(json.dumps(forged))

    record = supervisor.ProcessRecord.load(directory / PROCESS_FILE)
    assert record is not None and not supervisor.is_running(record)
    assert supervisor.stop_session(record) is False
    supervisor.stop(record)
    driver.stop(workspace.spec())  # stops what is recorded below the directory
    driver.deprovision(workspace.spec())

    assert bystander.poll() is None


def test_a_record_file_replaced_by_a_link_is_neither_followed_nor_trusted(
    workspace, driver, tmp_path
):
    directory = driver.directory(workspace.resource_name)
    target = tmp_path / "portal-file"
    target.write_text("the portal's")
    (directory / PROCESS_FILE).symlink_to(target)
    assert supervisor.ProcessRecord.load(directory / PROCESS_FILE) is None

    record = driver.start_process(workspace.spec(), SLEEP)  # saves the record over the link
    try:
        assert target.read_text() == "the portal's"
        assert not (directory / PROCESS_FILE).is_symlink()
        assert supervisor.ProcessRecord.load(directory / PROCESS_FILE) == record
    finally:
        supervisor.stop(record)


def test_a_deprovision_that_finds_no_directory_succeeds(workspace, driver):
    shutil.rmtree(driver.directory(workspace.resource_name))
    driver.deprovision(workspace.spec())
    assert not driver.directory(workspace.resource_name).exists()
