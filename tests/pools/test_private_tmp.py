"""Each local workspace has a /tmp of its own (`isolation.private_tmp`), and what it leaves
in its directory never stops the portal from removing it (`supervisor.remove_tree`).

A shared /tmp handed a deleted workspace's private files to the next workspace given its
uid, and let a workspace squat on the Ray directory another would use. A directory nested
past PATH_MAX made every deprovisioning fail, so the workspace kept its GPUs, and its
orphan stopped the sweep for everyone.
"""

# ruff: noqa: F811

import json
import os
import sys
import threading

import pytest

from pools import isolation, supervisor, tasks
from pools.drivers import driver_for
from pools.lifecycle import State
from pools.models import GpuAllocation, Workspace
from services.components.ray import temp_dir as ray_temp_dir
from tests.pools.test_isolation import cpu_profile, data_dir, driver, spec  # noqa: F401
from tests.workspace_fixtures import (  # noqa: F401
    fake_gpus,
    wait_for,
    workspace_factory,
    workspaces_root,
)

pytestmark = pytest.mark.django_db
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a uid per workspace needs root")

WRITE = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, b"private notes")
os.close(fd)
print("WROTE", flush=True)
"""

READ = r"""
import json, os, sys
try:
    found = open(sys.argv[1]).read()
except OSError as error:
    found = type(error).__name__
print("RESULT " + json.dumps({"uid": os.getuid(), "found": found}), flush=True)
"""

NEST = r"""
import os
for _ in range(25):  # 25 x 201 bytes: past PATH_MAX (4,096)
    os.mkdir("d" * 200)
    os.chdir("d" * 200)
print("NESTED", flush=True)
"""


def run(driver, workspace_spec, code: str, *args) -> str:
    record = driver.start_process(workspace_spec, [sys.executable, "-c", code, *map(str, args)])
    wait_for(lambda: not supervisor.is_running(record), timeout=30, what="the job to end")
    return (driver.directory(workspace_spec.name) / "process.log").read_text()


def read_as(driver, workspace_spec, path) -> dict:
    log = run(driver, workspace_spec, READ, path)
    return json.loads(next(x for x in log.splitlines() if x.startswith("RESULT "))[7:])


@needs_root
def test_a_deleted_workspaces_tmp_files_go_with_it_not_to_the_next_holder_of_its_uid(
    driver, cpu_profile
):
    first = spec(cpu_profile, "ws-1")
    driver.provision(first)
    uid = isolation.identity_of(driver.directory("ws-1"))
    assert "WROTE" in run(driver, first, WRITE, "/tmp/notes")
    assert (driver.directory("ws-1") / isolation.TMP_DIR / "notes").exists()
    assert not os.path.exists("/tmp/notes")  # not the host's /tmp
    driver.deprovision(first)

    second = spec(cpu_profile, "ws-2")  # another user's, given the same uid
    driver.provision(second)
    assert read_as(driver, second, "/tmp/notes") == {"uid": uid, "found": "FileNotFoundError"}


@needs_root
def test_a_workspace_cannot_squat_on_the_ray_directory_of_another(driver, cpu_profile):
    """The name of another workspace's Ray directory is easy to work out; making it in
    one's own /tmp leaves the other's untouched."""
    attacker, victim = spec(cpu_profile, "ws-1"), spec(cpu_profile, "ws-2")
    driver.provision(attacker)
    driver.provision(victim)
    victims_ray = ray_temp_dir(driver.directory("ws-2") / "services" / "ray")
    assert "WROTE" in run(driver, attacker, WRITE, victims_ray)  # a file where Ray wants a dir

    assert read_as(driver, victim, victims_ray)["found"] == "FileNotFoundError"
    on_host = isolation.host_path(driver.directory("ws-2"), victims_ray)
    assert on_host.parent == driver.directory("ws-2") / isolation.TMP_DIR


@needs_root
def test_a_link_in_place_of_the_workspaces_tmp_binds_nothing_else(driver, cpu_profile, data_dir):
    """The workspace owns `.tmp` and may swap it for a link to a directory it cannot see
    (here the portal's data directory); its next process gets a new, empty /tmp."""
    (data_dir / "readable").write_text("the portal's own file")
    (data_dir / "readable").chmod(0o644)
    workspace = spec(cpu_profile, "ws-1")
    driver.provision(workspace)
    assert "WROTE" in run(driver, workspace, WRITE, "/tmp/notes")
    tmp = driver.directory("ws-1") / isolation.TMP_DIR
    os.rename(tmp, driver.directory("ws-1") / "old-tmp")
    os.symlink(data_dir, tmp)

    assert read_as(driver, workspace, "/tmp/readable")["found"] == "FileNotFoundError"
    assert tmp.is_dir() and not tmp.is_symlink()


def nest_from_inside(workspace: Workspace):
    """What the workspace's own code may do: directories nested deeper than PATH_MAX."""
    workspace_driver = driver_for(workspace.infrastructure)
    assert "NESTED" in run(workspace_driver, workspace.spec(), NEST)
    return workspace_driver, workspace.spec()


def test_deleting_a_workspace_releases_its_gpus_whatever_its_files(ready_gpu_workspace):
    workspace_driver, workspace_spec = nest_from_inside(ready_gpu_workspace)
    assert GpuAllocation.objects.filter(holder=workspace_spec.name).exists()

    workspace_driver.deprovision(workspace_spec)

    assert not GpuAllocation.objects.filter(holder=workspace_spec.name).exists()
    assert not os.path.lexists(workspace_driver.directory(workspace_spec.name))


def test_one_workspaces_files_do_not_stop_the_sweep(ready_gpu_workspace):
    workspace_driver, workspace_spec = nest_from_inside(ready_gpu_workspace)
    Workspace.objects.filter(pk=ready_gpu_workspace.pk).update(state=State.DELETED)

    assert workspace_spec.name in tasks.sweep()["reaped"]
    assert not os.path.lexists(workspace_driver.directory(workspace_spec.name))


def test_a_sweep_step_that_fails_leaves_the_others_running(monkeypatch, db):
    def broken():
        raise RuntimeError("a bug in one step")

    monkeypatch.setattr(tasks, "reap_orphans", broken)

    result = tasks.sweep()

    assert result["reaped"] == "failed"
    assert result["processes_stopped"] == []


def test_two_removals_of_the_same_tree_at_once_both_succeed(tmp_path):
    """Two deliveries of the same deprovisioning: what the other removed first counts as
    removed, whichever gets where first."""
    tree = tmp_path / "ws-1"
    for branch in range(20):
        (tree / f"b{branch}").mkdir(parents=True)
        for leaf in range(100):
            (tree / f"b{branch}" / f"f{leaf}").write_text("x")
    errors = []

    def remove():
        try:
            supervisor.remove_tree(tree)
        except OSError as error:
            errors.append(error)

    workers = [threading.Thread(target=remove) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert not tree.exists()


def test_removing_a_tree_never_follows_a_link_on_the_way(tmp_path, settings):
    """Inside a workspace, a directory on the way swapped for a link leads nowhere."""
    settings.WORKSPACES_ROOT = tmp_path / "workspaces"
    precious = tmp_path / "precious"
    (precious / "ray").mkdir(parents=True)
    workspace = tmp_path / "workspaces" / "ws-1"
    workspace.mkdir(parents=True)
    (workspace / isolation.TMP_DIR).symlink_to(precious)

    supervisor.remove_tree(workspace / isolation.TMP_DIR / "ray")

    assert (precious / "ray").is_dir()
