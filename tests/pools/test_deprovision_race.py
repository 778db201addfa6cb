"""Two deprovisions of one workspace at once (issue 11, finding 8): a missing resource is done."""

# ruff: noqa: F811
import shutil
import subprocess

from pools import supervisor, tasks
from pools.drivers import driver_for
from pools.lifecycle import State
from pools.models import GpuAllocation, Workspace
from tests.workspace_fixtures import fake_gpus, workspace_factory, workspaces_root  # noqa: F401


def race_the_removal(monkeypatch, directory):
    """The other worker removes the whole directory just before ours does (the removal
    runs rm from the parent's fd, `supervisor.remove_tree`)."""
    run = subprocess.run
    raced = []

    def racing_run(argv, *args, **kwargs):
        if not raced and argv[0] == "rm":
            raced.append(argv)
            shutil.rmtree(directory)  # the other worker's removal
        return run(argv, *args, **kwargs)

    monkeypatch.setattr(supervisor.subprocess, "run", racing_run)
    return raced


def test_a_directory_removed_by_a_concurrent_deprovision_counts_as_removed(
    ready_gpu_workspace, workspaces_root, monkeypatch
):
    directory = workspaces_root / ready_gpu_workspace.resource_name
    (directory / "notebooks").mkdir()
    for i in range(5):
        (directory / "notebooks" / f"{i}.ipynb").write_text("{}")
    raced = race_the_removal(monkeypatch, directory)

    driver_for(ready_gpu_workspace.infrastructure).deprovision(ready_gpu_workspace.spec())

    assert raced and not directory.exists()


def test_the_slower_of_two_deprovision_tasks_records_no_failure(
    ready_gpu_workspace, workspaces_root, monkeypatch
):
    Workspace.objects.filter(pk=ready_gpu_workspace.pk).update(state=State.DELETING)
    directory = workspaces_root / ready_gpu_workspace.resource_name
    raced = race_the_removal(monkeypatch, directory)

    assert tasks.deprovision_workspace(ready_gpu_workspace.pk) == "deleted"

    assert raced
    ready_gpu_workspace.refresh_from_db()
    assert (ready_gpu_workspace.state, ready_gpu_workspace.attempts) == (State.DELETED, 0)
    assert not [e for e in ready_gpu_workspace.events.all() if "failed" in e.message]
    assert not GpuAllocation.objects.exists()
