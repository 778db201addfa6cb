"""Stopping a workspace sends its live services stack back to requested, to be deployed
again when it starts (`services.tasks.stop_for_target`). A workspace's page keeps its
earlier stacks as history: one that failed (and was left failed) is not its stack any
more, and a new one may have been deployed since. Stopping must stop the workspace,
whatever its history holds."""

import pytest

from pools import tasks as pool_tasks
from pools.lifecycle import State, Step, advance, transition
from profiles.models import ServiceComponent, ServicesProfile
from profiles.turnkey import ensure_turnkey
from services import actions as services
from services.models import ServiceDeployment
from workspaces import actions as workspace_actions

# The stop task runs as a worker runs it: in autocommit, not inside a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def turnkey_profiles():
    """A transactional test starts from an empty database: ship the turnkey profiles."""
    ensure_turnkey(ServicesProfile, ServiceComponent)


def _failed_stack(user, workspace, name):
    deployment = services.deploy(user, workspace, ServicesProfile.objects.get(name=name))
    assert transition(deployment, State.FAILED, message="its component failed")
    return deployment


def _ready_stack(user, workspace, name):
    deployment = services.deploy(user, workspace, ServicesProfile.objects.get(name=name))
    assert advance(deployment, [Step(State.PROVISIONING), Step(State.READY)])
    return deployment


def test_a_workspace_with_a_failed_stack_in_its_history_and_a_live_one_stops(
    scientist, ready_workspace
):
    old = _failed_stack(scientist, ready_workspace, "Jobs")
    live = _ready_stack(scientist, ready_workspace, "Jupyter Notebook")

    workspace_actions.stop_workspace(scientist, ready_workspace)
    result = pool_tasks.stop_workspace(ready_workspace.pk)

    ready_workspace.refresh_from_db()
    assert result == "stopped", result
    assert ready_workspace.state == State.STOPPED
    # The stack it ran waits for the start; the old failed one stays history.
    assert ServiceDeployment.objects.get(pk=live.pk).state == State.REQUESTED
    assert ServiceDeployment.objects.get(pk=old.pk).state == State.FAILED


def test_a_workspace_with_two_failed_stacks_in_its_history_stops(scientist, ready_workspace):
    """The second stack was deployed once the first had failed; it failed too. A stop
    cannot send both back to requested (one live stack per workspace): it must still
    stop the workspace."""
    _failed_stack(scientist, ready_workspace, "Jobs")
    _failed_stack(scientist, ready_workspace, "Jupyter Notebook")

    workspace_actions.stop_workspace(scientist, ready_workspace)
    result = pool_tasks.stop_workspace(ready_workspace.pk)

    ready_workspace.refresh_from_db()
    assert result == "stopped", result
    assert ready_workspace.state == State.STOPPED
    live = ServiceDeployment.objects.filter(workspace=ready_workspace, state=State.REQUESTED)
    assert live.count() <= 1
