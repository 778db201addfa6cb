"""Watched services stacks on the local driver (issue 12): a component whose process dies
fails its own health check (process alive, port answering); its stack and its workspace are
degraded with the reason, and the watcher restarts it with the same credential, or fails
both after its last attempt. Real processes: the jobs queue (the portal's own small server).
"""

import os
import signal
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from pools import supervisor, watch
from pools.lifecycle import State
from services.backends import base as svc
from services.backends.local import LOG_FILE, PROCESS_FILE, SERVICES_DIR, LocalServices
from tests.workspace_fixtures import FAKE_GPUS, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.local_services]


def later(hours: int = 1):
    return timezone.now() + timedelta(hours=hours)


@pytest.fixture
def killed_queue(ready_workspace, deploy, workspaces_root):
    """The workspace's "Jobs" stack, ready, whose queue was then killed."""
    deployment = deploy(ready_workspace, "Jobs")
    assert deployment.state == State.READY, deployment.failure_reason
    directory = workspaces_root / ready_workspace.resource_name / SERVICES_DIR / "job-queue"
    record = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
    os.killpg(record.pid, signal.SIGKILL)
    wait_for(lambda: not supervisor.is_running(record), 10, what="the queue to die")
    return deployment, record


def refreshed(*objects):
    for obj in objects:
        obj.refresh_from_db()


def test_a_dead_component_degrades_its_stack_and_is_restarted_with_its_token(
    ready_workspace, killed_queue
):
    deployment, record = killed_queue
    queue = deployment.components.get(component="job-queue")
    token = queue.secret

    assert watch.check_one()
    refreshed(ready_workspace, deployment, queue)
    reason = "Jobs queue exited; see the log"
    assert (ready_workspace.state, ready_workspace.failure_reason) == (State.DEGRADED, reason)
    assert (deployment.state, deployment.failure_reason) == (State.DEGRADED, reason)
    assert (queue.status, queue.reason, queue.endpoints) == (svc.FAILED, reason, [])
    assert deployment.events.filter(to_state=State.DEGRADED).exists()
    assert not watch.check_one(later())  # run again: nothing more to find or change

    assert watch.repair_one()
    refreshed(queue)
    assert queue.status in (svc.DEPLOYING, svc.READY)
    assert queue.secret == token  # the same credential: clients keep working
    assert queue.detail["pid"] != record.pid
    messages = list(deployment.events.values_list("message", flat=True))
    assert "Jobs queue restarting" in messages

    wait_for(lambda: watch.problems_of(ready_workspace) == [], 30, what="the queue to answer")
    assert watch.repair_one(later())
    refreshed(ready_workspace, deployment, queue)
    assert ready_workspace.state == State.READY
    assert deployment.state == State.READY and deployment.failure_reason == ""
    assert queue.status == svc.READY
    url = queue.endpoints[0]["url"]
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert not watch.repair_one(later(2))  # ready: nothing for the repair any more


def test_a_nul_byte_in_a_components_log_does_not_stop_the_watcher_degrading_the_workspace(
    ready_workspace, killed_queue, workspaces_root
):
    """The log is in the workspace's directory, so its code writes what it likes there;
    PostgreSQL refuses a NUL in text, so the tail is stored without control characters."""
    deployment, _ = killed_queue
    directory = workspaces_root / ready_workspace.resource_name / SERVICES_DIR / "job-queue"
    (directory / LOG_FILE).unlink()
    (directory / LOG_FILE).write_bytes(b"oops\x00\x1b[2J\n\tdone\n")

    assert watch.check_one()
    queue = deployment.components.get(component="job-queue")
    refreshed(ready_workspace)
    assert ready_workspace.state == State.DEGRADED
    assert (queue.status, queue.log_tail) == (svc.FAILED, "oops[2J\n\tdone")


def test_a_component_that_never_comes_back_fails_its_stack_and_workspace(
    ready_workspace, killed_queue, monkeypatch
):
    deployment, _ = killed_queue
    monkeypatch.setattr(
        LocalServices,
        "deploy",
        lambda self, ctx: svc.ComponentResult(svc.FAILED, reason="port 1 refused"),
    )
    assert watch.check_one()
    for attempt in range(watch.MAX_REPAIRS + 1):
        assert watch.repair_one(later(attempt + 1))
    refreshed(ready_workspace, deployment)
    assert ready_workspace.state == State.FAILED
    assert ready_workspace.failure_reason == (
        "Jobs queue: port 1 refused (not repaired after 3 attempts) Stopped, its GPUs released."
    )
    assert deployment.state == State.FAILED
    assert deployment.failure_reason == ready_workspace.failure_reason
    assert not watch.repair_one(later(10))


def test_after_a_gone_gpu_is_replaced_the_stack_runs_again_without_waiting_for_a_look(
    ready_workspace, deploy, workspaces_root, monkeypatch
):
    """The repair of a workspace whose GPU is gone stops every process of the workspace,
    its services' included, so they start again on the GPU that replaces it: the stack is
    restarted by that same repair, not found down at the next look."""
    deployment = deploy(ready_workspace, "Jobs")
    assert deployment.state == State.READY, deployment.failure_reason
    directory = workspaces_root / ready_workspace.resource_name / SERVICES_DIR / "job-queue"
    before = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
    # GPU 0 (the workspace's GPU-aaaa) is swapped for another board.
    swapped = replace(FAKE_GPUS[0], uuid="GPU-cccc")
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: [swapped, FAKE_GPUS[1]])

    assert watch.check_one()
    refreshed(ready_workspace, deployment)
    assert ready_workspace.state == State.DEGRADED
    assert "(GPU-aaaa) is gone from this machine" in ready_workspace.failure_reason
    assert deployment.state == State.READY  # its queue answered: nothing wrong with it

    assert watch.repair_one()
    assert not supervisor.is_running(before)  # stopped with the workspace's processes
    after = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
    assert after is not None and after.pid != before.pid and supervisor.is_running(after)
    queue = deployment.components.get(component="job-queue")
    assert queue.status in (svc.DEPLOYING, svc.READY)
    assert "Jobs queue restarting" in deployment.events.values_list("message", flat=True)

    wait_for(lambda: watch.problems_of(ready_workspace) == [], 30, what="the queue to answer")
    assert watch.repair_one(later())
    refreshed(ready_workspace, deployment)
    assert (ready_workspace.state, deployment.state) == (State.READY, State.READY)
