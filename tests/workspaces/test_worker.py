"""End to end with a real django-q2 worker process (`manage.py qcluster`)."""

import pytest

from pools.lifecycle import State
from pools.models import GpuAllocation, Workspace
from tests.workspace_fixtures import wait_for
from workspaces import actions


def state_of(workspace) -> str:
    return Workspace.objects.values_list("state", flat=True).get(pk=workspace.pk)


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_provisions_and_deletes_a_workspace(
    qcluster, member, starter, workspaces_root
):
    workspace = actions.request_workspace(member, starter, "e2e")  # commits: enqueued now

    wait_for(lambda: state_of(workspace) == State.READY, 90, what="ready")
    directory = workspaces_root / workspace.resource_name
    assert (directory / "workspace.env").exists()
    workspace.refresh_from_db()
    assert workspace.connection["directory"] == str(directory)
    assert workspace.events.filter(message="environment file written").count() == 1

    actions.delete_workspace(member, workspace)
    wait_for(lambda: state_of(workspace) == State.DELETED, 90, what="deleted")
    assert not directory.exists()
    assert not GpuAllocation.objects.exists()
    assert qcluster.poll() is None  # the worker is still up
