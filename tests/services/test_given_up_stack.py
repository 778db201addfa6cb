"""A workspace the watch gives up on, whose services stack answered (it was its own process
that never came back): the stack's processes are stopped with the workspace, so the stack
fails with it, and Open hands out no address."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from pools import supervisor, watch
from pools.drivers.local import LocalDriver
from pools.lifecycle import State
from portal.models import AuditEntry
from services.backends import base as svc
from services.backends.local import PROCESS_FILE, SERVICES_DIR

pytestmark = [pytest.mark.django_db, pytest.mark.local_services]


def later(hours: int):
    return timezone.now() + timedelta(hours=hours)


@pytest.fixture
def given_up(ready_workspace, deploy, workspaces_root, monkeypatch):
    """The workspace's Jobs stack ready; its own check keeps failing until the watch gives
    up on it (stopped, failed)."""
    deployment = deploy(ready_workspace, "Jobs")
    assert deployment.state == State.READY, deployment.failure_reason
    directory = workspaces_root / ready_workspace.resource_name / SERVICES_DIR / "job-queue"
    record = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
    assert supervisor.is_running(record)
    # The workspace's own process never comes back (its port taken, say): its check fails.
    monkeypatch.setattr(LocalDriver, "check", lambda self, spec: ["Its process 1 exited."])
    assert watch.check_one()
    for attempt in range(watch.MAX_REPAIRS + 1):
        assert watch.repair_one(later(attempt + 1))
    ready_workspace.refresh_from_db()
    deployment.refresh_from_db()
    assert ready_workspace.state == State.FAILED
    assert not supervisor.is_running(record)  # stopped with the workspace
    return ready_workspace, deployment


def test_a_given_up_workspace_does_not_leave_its_stopped_stack_ready(given_up):
    """`watch._give_up` stops every process of the workspace, the stack's included: a
    stack that answered at the last look must not go on reading "ready" (it did, its
    components with their endpoints, though nothing ran and no watch looks again)."""
    workspace, deployment = given_up
    assert deployment.state == State.FAILED
    assert deployment.failure_reason == workspace.failure_reason
    assert not deployment.components.filter(status=svc.READY).exists()
    assert list(deployment.components.values_list("endpoints", flat=True)) == [[]]


def test_open_of_a_failed_workspace_sends_the_owner_nowhere(client, scientist, given_up):
    """The address its stopped service had may be another workspace's by now (with the
    token in the link, for JupyterLab): Open of a failed workspace goes nowhere and is not
    audited as an open."""
    workspace, _ = given_up
    client.force_login(scientist)
    url = reverse("workspaces:open", args=[workspace.pk, "job-queue"])
    response = client.post(url)
    assert not response["Location"].startswith("http://127.0.0.1:")
    assert not AuditEntry.objects.filter(message__startswith="opened").exists()
