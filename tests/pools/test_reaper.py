"""The sweep reaps only resources whose owner is deleted or absent (issue 11, finding 3)."""

# ruff: noqa: F811

from pools import tasks
from pools.drivers.base import PermanentError
from pools.drivers.local import MARKER
from pools.lifecycle import POOL_LIFECYCLE, WORKSPACE_LIFECYCLE, State
from pools.models import GpuAllocation, PoolInstance, Workspace
from profiles.choices import AllocationStrategy
from tests.pools.warm_fixtures import make_instances
from tests.workspace_fixtures import fake_gpus, workspace_factory, workspaces_root  # noqa: F401
from workspaces import actions


def fail_every_stop(monkeypatch):
    def broken(self, spec, report=None):
        raise PermanentError("the host refused to stop it", "kill: permission denied")

    monkeypatch.setattr("pools.drivers.local.LocalDriver.stop", broken)


def test_a_failed_stop_then_the_sweep_keeps_the_users_files(
    ready_gpu_workspace, member, workspaces_root, monkeypatch
):
    """The finding exactly: a stop that fails permanently, then the next sweep."""
    notebook = workspaces_root / ready_gpu_workspace.resource_name / "analysis.ipynb"
    notebook.write_text('{"cells": ["six weeks of work"]}')
    fail_every_stop(monkeypatch)
    actions.stop_workspace(member, ready_gpu_workspace)
    assert tasks.stop_workspace(ready_gpu_workspace.pk).startswith("failed")
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.FAILED

    assert tasks.sweep()["reaped"] == []

    assert notebook.read_text() == '{"cells": ["six weeks of work"]}'
    assert GpuAllocation.objects.filter(holder=ready_gpu_workspace.resource_name).exists()


def test_deleting_the_failed_workspace_releases_what_it_held(
    ready_gpu_workspace, member, workspaces_root, monkeypatch
):
    fail_every_stop(monkeypatch)
    actions.stop_workspace(member, ready_gpu_workspace)
    tasks.stop_workspace(ready_gpu_workspace.pk)
    ready_gpu_workspace.refresh_from_db()
    actions.delete_workspace(member, ready_gpu_workspace)
    assert tasks.deprovision_workspace(ready_gpu_workspace.pk) == "deleted"
    assert not (workspaces_root / ready_gpu_workspace.resource_name).exists()
    assert not GpuAllocation.objects.exists()


def test_resources_whose_row_is_deleted_or_absent_are_reaped(ready_gpu_workspace, workspaces_root):
    directory = workspaces_root / ready_gpu_workspace.resource_name
    Workspace.objects.filter(pk=ready_gpu_workspace.pk).update(state=State.DELETED)
    assert tasks.reap_orphans() == [ready_gpu_workspace.resource_name]
    assert not directory.exists()
    stray = workspaces_root / "ws-999999"  # no row at all
    stray.mkdir()
    (stray / MARKER).write_text("ws-999999")
    assert tasks.reap_orphans() == ["ws-999999"]
    assert not stray.exists()


def test_a_failed_workspace_on_a_claimed_warm_instance_keeps_it(
    member, local_infrastructure, profile_factory, fake_gpus, workspaces_root, monkeypatch
):
    profile = profile_factory(
        local_infrastructure,
        "Warm A100",
        groups=[("A100-40GB", 1)],
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=1,
    )
    [instance] = make_instances(profile, 1, state=State.REQUESTED)
    assert tasks.provision_pool_instance(instance.pk) == "ready"
    workspace = actions.request_workspace(member, profile)
    assert workspace.state == State.READY
    fail_every_stop(monkeypatch)
    actions.stop_workspace(member, workspace)
    tasks.stop_workspace(workspace.pk)
    workspace.refresh_from_db()
    assert workspace.state == State.FAILED

    assert tasks.reap_orphans() == []
    assert (workspaces_root / instance.resource_name).exists()


def test_each_lifecycle_says_in_which_states_its_object_may_hold_resources():
    assert WORKSPACE_LIFECYCLE.holds_resources(State.FAILED)
    assert WORKSPACE_LIFECYCLE.holds_resources(State.STOPPED)
    assert not WORKSPACE_LIFECYCLE.holds_resources(State.DELETED)
    assert sorted(WORKSPACE_LIFECYCLE.holding_states) == sorted(
        set(State.values) - {State.DELETED, State.CLAIMED}
    )
    # A claimed instance's resources are its workspace's; a failed one was released.
    assert sorted(POOL_LIFECYCLE.holding_states) == sorted(
        [State.REQUESTED, State.PROVISIONING, State.READY, State.DELETING]
    )
    assert PoolInstance.lifecycle is POOL_LIFECYCLE
