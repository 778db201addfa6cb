"""Watched workspaces on the local driver (`pools.watch`): checked, degraded, repaired,
failed after a bounded number of attempts; each step claims one workspace and running it
again changes nothing."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811

import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from pools import supervisor, tasks, watch
from pools.drivers.local import PROCESS_FILE, LocalDriver
from pools.lifecycle import GPU_STATES, IN_FLIGHT_STATES, LIVE_STATES, State
from pools.models import GpuAllocation, Workspace
from tests.workspace_fixtures import (  # noqa: F401
    fake_gpus,
    wait_for,
    warn_of_expiry,
    workspace_factory,
    workspaces_root,
)

pytestmark = pytest.mark.django_db


def later(seconds: int = 3600):
    """A moment when every look the watcher scheduled is due."""
    return timezone.now() + timedelta(seconds=seconds)


def transitions(workspace) -> list[tuple[str, str]]:
    return [(e.from_state, e.to_state) for e in workspace.events.all() if e.is_transition]


def serve(workspace) -> supervisor.ProcessRecord:
    """Give the workspace a process of its own that answers on a port (a web server)."""
    port = supervisor.free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    record = LocalDriver(workspace.infrastructure).start_process(workspace.spec(), argv, port)
    assert supervisor.wait_healthy(record)
    return record


@pytest.fixture
def stop_processes(workspaces_root):
    yield
    supervisor.stop_registered_below(workspaces_root)


def test_a_healthy_workspace_is_checked_once_per_interval(ready_gpu_workspace):
    now = timezone.now()
    assert watch.check_one(now)
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.READY
    assert ready_gpu_workspace.checked_at == now
    assert not watch.check_one(now)  # not due again yet: the same result
    assert watch.check_one(now + watch.CHECK_INTERVAL + timedelta(seconds=1))
    assert transitions(ready_gpu_workspace)[-1] == (State.PROVISIONING, State.READY)


def test_a_deleted_directory_degrades_the_workspace_then_fails_it(ready_gpu_workspace):
    directory = LocalDriver(ready_gpu_workspace.infrastructure).directory(
        ready_gpu_workspace.resource_name
    )
    shutil.rmtree(directory)
    before = timezone.now()

    assert watch.check_one()
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.DEGRADED
    assert ready_gpu_workspace.failure_reason == f"Its directory {directory} is gone."
    assert ready_gpu_workspace.state_changed >= before  # the time it was found
    degraded = ready_gpu_workspace.events.get(to_state=State.DEGRADED)
    assert degraded.message == f"degraded: Its directory {directory} is gone."
    assert not watch.check_one(later())  # a degraded one is the repair's, not the check's

    assert watch.repair_one()
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.FAILED
    assert ready_gpu_workspace.failure_reason == (
        f"Cannot be repaired: Its directory {directory} is gone, and its files with it. "
        "Stopped, its GPUs released."
    )
    assert not GpuAllocation.objects.filter(holder=ready_gpu_workspace.resource_name).exists()
    assert not directory.exists()  # never made again, empty, as if nothing happened
    assert not watch.repair_one(later())  # nothing left to do: the same result
    assert transitions(ready_gpu_workspace)[-2:] == [
        (State.READY, State.DEGRADED),
        (State.DEGRADED, State.FAILED),
    ]


def test_a_lost_gpu_allocation_is_taken_again_and_the_workspace_is_ready(ready_gpu_workspace):
    GpuAllocation.objects.filter(holder=ready_gpu_workspace.resource_name).delete()

    assert watch.sweep() == {"repaired": 0, "checked": 1}  # repairs run before checks
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.DEGRADED
    assert ready_gpu_workspace.failure_reason == "It holds 0 of its 1 GPU allocations."
    assert watch.repair_one()  # due at once: the first attempt takes the GPU again
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.attempts == 1
    assert GpuAllocation.objects.filter(holder=ready_gpu_workspace.resource_name).count() == 1
    assert not watch.repair_one()  # the next look waits for its backoff

    assert watch.repair_one(later())
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.READY
    assert ready_gpu_workspace.failure_reason == ""
    assert ready_gpu_workspace.attempts == 0
    assert transitions(ready_gpu_workspace)[-1] == (State.DEGRADED, State.READY)
    assert ready_gpu_workspace.events.last().message == "repaired"
    assert any(
        step.message.startswith("repair attempt 1 of 3") for step in ready_gpu_workspace.steps()
    )


def processes_serving(port: int) -> int:
    """How many processes on this machine run the test web server of `port`."""
    found = subprocess.run(["pgrep", "-f", f"http.server {port} "], capture_output=True, text=True)
    return len(found.stdout.split())


def test_a_killed_process_is_restarted_on_its_port(ready_gpu_workspace, stop_processes):
    record = serve(ready_gpu_workspace)
    started = processes_serving(record.port)  # in a sandbox: bubblewrap and what runs inside
    # Killing the process the registry holds (bubblewrap, in a sandbox) leaves the command
    # inside running: the repair must stop those leftovers, not serve beside them.
    os.kill(record.pid, signal.SIGKILL)
    wait_for(lambda: not supervisor.is_running(record), 10, what="the process to die")

    assert watch.check_one()
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.failure_reason == f"Its process {record.pid} exited."
    assert watch.repair_one()
    directory = LocalDriver(ready_gpu_workspace.infrastructure).directory(
        ready_gpu_workspace.resource_name
    )
    restarted = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
    assert restarted.pid != record.pid and restarted.port == record.port
    assert supervisor.wait_healthy(restarted)
    assert processes_serving(record.port) == started
    assert watch.repair_one(later())
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.READY


def test_what_cannot_be_repaired_is_stopped_and_fails_after_the_last_attempt(
    ready_gpu_workspace, stop_processes
):
    # Alive, but never answers on its port: every restart runs the same silent command.
    port = supervisor.free_port()
    driver = LocalDriver(ready_gpu_workspace.infrastructure)
    driver.start_process(
        ready_gpu_workspace.spec(), [sys.executable, "-c", "import time; time.sleep(600)"], port
    )
    assert watch.check_one()
    for attempt in range(1, watch.MAX_REPAIRS + 1):
        assert watch.repair_one(later(attempt * 3600))
        ready_gpu_workspace.refresh_from_db()
        assert ready_gpu_workspace.state == State.DEGRADED
        assert ready_gpu_workspace.attempts == attempt
    assert watch.repair_one(later(10 * 3600))
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.FAILED
    assert ready_gpu_workspace.failure_reason == (
        f"Its process does not answer on port {port}. (not repaired after 3 attempts) "
        "Stopped, its GPUs released."
    )
    # Failed counts against no GPU quota and keeps only its storage: stopped as Stop does.
    assert State.FAILED not in GPU_STATES
    assert not GpuAllocation.objects.filter(holder=ready_gpu_workspace.resource_name).exists()
    record = supervisor.ProcessRecord.registered_at(
        driver.directory(ready_gpu_workspace.resource_name) / PROCESS_FILE
    )
    assert not supervisor.is_running(record)
    assert driver.directory(ready_gpu_workspace.resource_name).is_dir()  # its files are kept
    assert not watch.repair_one(later(20 * 3600))  # run again: the same result


def test_a_stop_during_a_repair_leaves_no_gpu_held(ready_gpu_workspace, monkeypatch):
    """Nothing serialises a Stop with the repair, which may take GPUs after the stop
    released them: a stopped workspace would hold a GPU that no quota counts."""
    GpuAllocation.objects.filter(holder=ready_gpu_workspace.resource_name).delete()
    assert watch.check_one()
    repair = LocalDriver.repair

    def repair_while_the_owner_stops_it(self, spec, report):
        # The owner presses Stop as the repair begins; another worker runs the stop task.
        ready_gpu_workspace.refresh_from_db()
        monkeypatch.setattr("pools.tasks.enqueue_stop", lambda pk: None)
        assert tasks.request_stop(ready_gpu_workspace)
        assert tasks.stop_workspace(ready_gpu_workspace.pk) == "stopped"
        return repair(self, spec, report)

    monkeypatch.setattr(LocalDriver, "repair", repair_while_the_owner_stops_it)
    assert watch.repair_one()
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.STOPPED
    assert not GpuAllocation.objects.filter(holder=ready_gpu_workspace.resource_name).exists()
    assert ready_gpu_workspace.events.last().message == (
        "stopped during its repair: what the repair took is released"
    )


def test_two_steps_never_take_the_same_workspace(ready_gpu_workspace, member, workspace_factory):
    other = workspace_factory(member, ready_gpu_workspace.profile, state=State.READY)
    now = timezone.now()
    assert watch.check_one(now) and watch.check_one(now)
    assert not watch.check_one(now)
    assert set(Workspace.objects.values_list("checked_at", flat=True)) == {now}
    other.refresh_from_db()
    assert other.state == State.DEGRADED  # never provisioned: no directory


def test_a_degraded_workspace_past_its_lifetime_is_deleted(ready_gpu_workspace):
    GpuAllocation.objects.filter(holder=ready_gpu_workspace.resource_name).delete()
    assert watch.check_one()
    Workspace.objects.filter(pk=ready_gpu_workspace.pk).update(expires_at=timezone.now())
    warn_of_expiry(ready_gpu_workspace)  # the sweep moves an expiry nobody was warned of
    assert tasks.expire() == 1
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.DELETING
    assert not watch.repair_one(later())  # deleting: no longer the watcher's


def test_a_degraded_workspace_counts_as_live_and_holds_its_gpus():
    assert State.DEGRADED in LIVE_STATES and State.DEGRADED in GPU_STATES
    assert State.DEGRADED in IN_FLIGHT_STATES  # its pages follow it until it is repaired
    assert Workspace.lifecycle.holds_resources(State.DEGRADED)


def test_a_sweep_checks_every_due_workspace_while_its_time_lasts(
    member, gpu_profile, workspace_factory, monkeypatch
):
    due = [workspace_factory(member, gpu_profile, state=State.READY) for _ in range(130)]
    checked = []
    monkeypatch.setattr(
        watch, "check_workspace", lambda workspace, now: checked.append(workspace.pk)
    )
    # More than a fixed batch of 100 per sweep would check: every due one.
    assert watch.sweep() == {"repaired": 0, "checked": 130}
    assert sorted(checked) == sorted(workspace.pk for workspace in due)
    assert watch.sweep(later(), seconds=0) == {"repaired": 0, "checked": 0}  # no time left
    assert watch.sweep(later()) == {"repaired": 0, "checked": 130}


def test_a_check_that_fails_spares_the_other_workspaces(
    member, gpu_profile, workspace_factory, monkeypatch
):
    broken, other = (workspace_factory(member, gpu_profile, state=State.READY) for _ in "ab")

    def check(workspace, now):
        if workspace.pk == broken.pk:
            raise RuntimeError("a bug in one workspace's check")
        checked.append(workspace.pk)

    checked = []
    monkeypatch.setattr(watch, "check_workspace", check)
    assert watch.sweep() == {"repaired": 0, "checked": 2}
    assert checked == [other.pk]
    broken.refresh_from_db()
    assert broken.state == State.READY and broken.checked_at is None  # it was not checked
