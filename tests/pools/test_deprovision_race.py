"""Two deprovisions of one workspace at once (issue 11, finding 8): a missing resource is done."""

# ruff: noqa: F811
import os
import shutil

from pools import tasks
from pools.drivers import driver_for
from pools.lifecycle import State
from pools.models import GpuAllocation, Workspace
from tests.workspace_fixtures import fake_gpus, workspace_factory, workspaces_root  # noqa: F401


def race_the_first_unlink(monkeypatch, directory):
    """The other worker removes the whole directory just before our rmtree's first unlink
    (rmtree removes entries relative to an open directory: `dir_fd`)."""
    unlink = os.unlink
    raced = []

    def racing_unlink(path, *args, **kwargs):
        if not raced and "dir_fd" in kwargs:
            raced.append(path)
            monkeypatch.setattr(os, "unlink", unlink)  # the other worker's rmtree
            shutil.rmtree(directory)
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", racing_unlink)
    return raced


def test_a_directory_removed_by_a_concurrent_deprovision_counts_as_removed(
    ready_gpu_workspace, workspaces_root, monkeypatch
):
    directory = workspaces_root / ready_gpu_workspace.resource_name
    (directory / "notebooks").mkdir()
    for i in range(5):
        (directory / "notebooks" / f"{i}.ipynb").write_text("{}")
    raced = race_the_first_unlink(monkeypatch, directory)

    driver_for(ready_gpu_workspace.infrastructure).deprovision(ready_gpu_workspace.spec())

    assert raced and not directory.exists()


def test_the_slower_of_two_deprovision_tasks_records_no_failure(
    ready_gpu_workspace, workspaces_root, monkeypatch
):
    Workspace.objects.filter(pk=ready_gpu_workspace.pk).update(state=State.DELETING)
    directory = workspaces_root / ready_gpu_workspace.resource_name
    raced = race_the_first_unlink(monkeypatch, directory)

    assert tasks.deprovision_workspace(ready_gpu_workspace.pk) == "deleted"

    assert raced
    ready_gpu_workspace.refresh_from_db()
    assert (ready_gpu_workspace.state, ready_gpu_workspace.attempts) == (State.DELETED, 0)
    assert not [e for e in ready_gpu_workspace.events.all() if "failed" in e.message]
    assert not GpuAllocation.objects.exists()
