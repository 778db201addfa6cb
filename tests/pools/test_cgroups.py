"""A local workspace is held to its profile's CPUs and memory, and cannot fork without end
(pools.cgroups): one job must not take the machine from the portal and the other
workspaces. These start real processes through the local driver and the supervisor, in
real control groups, and let them try."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import sys
from pathlib import Path

import pytest

from pools import cgroups, supervisor, tasks
from pools.drivers import driver_for
from pools.drivers.base import GroupSpec, TransientError, WorkspaceSpec
from pools.lifecycle import State
from pools.models import Workspace
from tests.workspace_fixtures import (  # noqa: F401
    starter,
    wait_for,
    workspace_factory,
    workspaces_root,
)

pytestmark = pytest.mark.django_db

MiB = 2**20


@pytest.fixture(autouse=True)
def enforced():
    held = cgroups.support()
    assert held.enforced, held.description  # CI runs as root with cgroups: never skipped
    return held


@pytest.fixture
def workspace(member, starter, workspace_factory, workspaces_root):
    workspace = workspace_factory(member, starter, state=State.READY)
    driver_for(workspace.infrastructure).provision(workspace.spec())
    yield workspace
    supervisor.stop_registered_below(workspaces_root)


@pytest.fixture
def driver(workspace):
    return driver_for(workspace.infrastructure)


def run(directory: Path, code: str, limits: cgroups.Limits, timeout: float = 60) -> str:
    """Run `code` as a process of the workspace in `directory` to its end; its output."""
    log = directory / f"job-{len(list(directory.glob('job-*.log')))}.log"  # one per run
    record = supervisor.start(
        [sys.executable, "-c", code], directory, {}, log, holder=directory.name, limits=limits
    )
    wait_for(lambda: not supervisor.is_running(record), timeout=timeout, what="the job")
    return log.read_text()


def group_file(directory: Path, name: str) -> str:
    for group in cgroups.groups_of(directory):
        if (group / name).exists():
            return (group / name).read_text().strip()
    raise AssertionError(f"no {name} in {cgroups.groups_of(directory)}")


def counters(directory: Path, name: str) -> dict[str, int]:
    return {
        k: int(v) for k, v in (line.split() for line in group_file(directory, name).splitlines())
    }


def v1() -> bool:
    return cgroups.support().version == "v1"


def cpu_quota(directory: Path) -> int:
    if v1():
        return int(group_file(directory, "cpu.cfs_quota_us"))
    return int(group_file(directory, "cpu.max").split()[0])


def memory_limit(directory: Path) -> int:
    return int(group_file(directory, "memory.limit_in_bytes" if v1() else "memory.max"))


def oom_kills(directory: Path) -> int:
    return counters(directory, "memory.oom_control" if v1() else "memory.events")["oom_kill"]


def test_limits_are_the_profiles_cpus_and_memory_over_every_resource_group():
    spec = WorkspaceSpec(
        "ws-1",
        "mia",
        "mixed",
        1,
        (GroupSpec(0, cpu=4, ram_gb=16), GroupSpec(1, cpu=2, ram_gb=8, node_count=2)),
    )
    limits = cgroups.Limits.of(spec)
    assert (limits.cpus, limits.memory_bytes) == (8, 32 * 2**30)
    assert limits.describe() == "8 CPUs, 32 GiB memory"


def test_a_workspace_process_runs_in_its_own_group_with_its_profiles_limits(
    driver, workspace, workspaces_root
):
    spec = workspace.spec()
    record = driver.start_process(
        spec, [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(300)"]
    )
    directory = driver.directory(spec.name)
    wait_for(lambda: "up" in (directory / "process.log").read_text(), timeout=30, what="start")

    groups = cgroups.groups_of(directory)
    assert groups  # memory, cpu and pids: one group each in v1, one in v2
    # The process (the whole sandbox, from its first instruction) is in every one of them.
    own = Path(f"/proc/{record.pid}/cgroup").read_text()
    assert own.count(f"/portal-workspaces/{groups[0].name}\n") == len(groups)
    # Starter: 1 CPU, 4 GB (tests/conftest.py's profile_factory gives the form's defaults).
    assert cpu_quota(directory) == cgroups.CPU_PERIOD
    assert memory_limit(directory) == 4 * 2**30
    assert int(group_file(directory, "pids.max")) == cgroups.TASKS_MAX
    assert driver.status(spec).detail["limits"] == "1 CPU, 4 GiB memory"


def test_a_job_using_more_memory_than_its_workspace_has_is_stopped_and_nothing_else(
    workspaces_root, workspace, driver
):
    directory = driver.directory(workspace.resource_name)
    limits = cgroups.Limits(cpus=1, memory_bytes=128 * MiB)
    small = run(directory, "b = bytearray(32 * 2**20); print('fits', len(b))", limits)
    assert "fits" in small
    big = run(directory, "b = bytearray(512 * 2**20); print('fits', len(b))", limits)
    assert "fits" not in big  # killed by the OOM killer inside its own group
    assert oom_kills(directory) == 1


def test_a_job_busy_on_every_core_gets_its_share_only(workspaces_root, workspace, driver):
    directory = driver.directory(workspace.resource_name)
    busy = "import time\nend = time.monotonic() + 1\nwhile time.monotonic() < end: pass\n"
    run(directory, busy, cgroups.Limits(cpus=0.2, memory_bytes=256 * MiB))
    assert cpu_quota(directory) == 20_000
    # The kernel held it back: it ran out of its 20 ms per 100 ms period, period after period.
    assert counters(directory, "cpu.stat")["nr_throttled"] >= 3


def test_a_fork_bomb_stops_at_the_workspaces_task_limit(
    workspaces_root, workspace, driver, monkeypatch
):
    monkeypatch.setattr(cgroups, "TASKS_MAX", 24)
    directory = driver.directory(workspace.resource_name)
    bomb = (
        "import subprocess, sys\n"
        "children = []\n"
        "try:\n"
        "    for _ in range(100):\n"
        "        children.append(subprocess.Popen(['sleep', '30']))\n"
        "except OSError as error:\n"
        "    print('refused after', len(children), type(error).__name__)\n"
        "for child in children:\n"
        "    child.kill()\n"
    )
    output = run(directory, bomb, cgroups.Limits(cpus=1, memory_bytes=256 * MiB))
    assert "refused after" in output, output
    started = int(output.split("refused after")[1].split()[0])
    assert started < 24


def test_deprovisioning_removes_the_workspaces_groups(driver, workspace):
    spec = workspace.spec()
    driver.start_process(spec, [sys.executable, "-c", "import time; time.sleep(300)"])
    directory = driver.directory(spec.name)
    assert cgroups.groups_of(directory)
    driver.deprovision(spec)
    assert cgroups.groups_of(directory) == []


def test_forgetting_a_workspace_ends_what_is_still_in_its_groups_and_removes_them(
    driver, workspace
):
    # A process nobody stopped (never registered, or its stop raced its exit): its group
    # would stay busy, and the host would keep it for good.
    spec = workspace.spec()
    record = driver.start_process(
        spec, [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(300)"]
    )
    directory = driver.directory(spec.name)
    wait_for(lambda: "up" in (directory / "process.log").read_text(), timeout=30, what="start")
    assert all((group / "cgroup.procs").read_text() for group in cgroups.groups_of(directory))
    cgroups.forget(directory)
    assert cgroups.groups_of(directory) == []
    assert not supervisor.is_running(record)


def test_the_sweep_removes_the_groups_of_a_workspace_that_is_gone(
    driver, workspace, workspaces_root
):
    spec = workspace.spec()
    record = driver.start_process(spec, [sys.executable, "-c", "import time; time.sleep(300)"])
    directory = driver.directory(spec.name)
    Workspace.objects.filter(pk=workspace.pk).update(state=State.DELETED)
    assert cgroups.groups_of(directory)

    tasks.sweep()

    assert not supervisor.is_running(record)
    assert cgroups.groups_of(directory) == []


def test_a_start_fails_rather_than_run_unlimited_where_the_group_cannot_be_made(
    workspaces_root, workspace, driver, monkeypatch, tmp_path
):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    held = cgroups.Support("v1", "test", (blocked / "portal-workspaces",))
    monkeypatch.setattr(cgroups, "support", lambda: held)
    with pytest.raises(TransientError, match="No cgroup for"):
        driver.start_process(workspace.spec(), [sys.executable, "-c", "print('unlimited')"])
    log = driver.directory(workspace.resource_name) / "process.log"
    assert not log.exists() or "unlimited" not in log.read_text()


def test_limits_turned_off_start_processes_without_a_group(settings, workspaces_root):
    settings.LOCAL_WORKSPACE_LIMITS = "off"
    held = cgroups.support()
    assert not held.enforced
    assert "LOCAL_WORKSPACE_LIMITS=off" in held.description
    assert cgroups.join_argv(workspaces_root / "ws-1", cgroups.Limits(1, 2**30)) == []


def test_the_local_infrastructure_status_says_whether_limits_hold(local_infrastructure, settings):
    assert "CPUs and memory are limits (cgroup v" in local_infrastructure.isolation_status
    settings.LOCAL_WORKSPACE_LIMITS = "off"
    assert "limits are turned off" in local_infrastructure.isolation_status


def test_on_cgroup_v2_the_groups_go_below_a_top_level_group_with_the_controllers(
    tmp_path, monkeypatch, settings
):
    """No v2 hierarchy with controllers exists on this machine (it runs v1), so this reads
    what the probe and a start write into a stand-in tree: the kernel's files are plain
    files there."""
    unified = tmp_path / "cgroup"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"35 24 0:30 / {unified} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
        "rw,nsdelegate,memory_recursiveprot\n"
    )
    monkeypatch.setattr(cgroups, "MOUNTINFO", mountinfo)
    settings.LOCAL_WORKSPACE_LIMITS = "auto"
    monkeypatch.setattr(cgroups, "_probed", {})

    held = cgroups.support()
    assert held.version == "v2", held.description
    parent = unified / "portal-workspaces"
    assert held.parents == (parent,)
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"

    argv = cgroups.join_argv(tmp_path / "workspaces" / "ws-1", cgroups.Limits(2.5, 3 * 2**30))
    group = next(parent.glob("portal-*"))
    assert argv[-1] == "--" and str(group / "cgroup.procs") in argv
    assert (group / "memory.max").read_text() == str(3 * 2**30)
    assert (group / "cpu.max").read_text() == "250000 100000"
    assert (group / "pids.max").read_text() == str(cgroups.TASKS_MAX)


def test_a_v1_hierarchy_without_limit_files_is_not_taken_for_limited(tmp_path, monkeypatch):
    """Stand-in hierarchies (plain directories): the groups made there have no limit files,
    as with a hierarchy that lacks the controller, so nothing may say limits hold."""
    lines = []
    for number, controller in enumerate(cgroups.CONTROLLERS):
        (tmp_path / controller).mkdir()
        lines.append(
            f"{40 + number} 24 0:{50 + number} / {tmp_path / controller} rw shared:1 - cgroup "
            f"cgroup rw,{controller}"
        )
    (tmp_path / "mountinfo").write_text("\n".join(lines) + "\n")
    (tmp_path / "own").write_text(
        "".join(f"{n}:{c}:/\n" for n, c in enumerate(cgroups.CONTROLLERS))
    )
    monkeypatch.setattr(cgroups, "MOUNTINFO", tmp_path / "mountinfo")
    monkeypatch.setattr(cgroups, "OWN_GROUPS", tmp_path / "own")
    monkeypatch.setattr(cgroups, "_probed", {})

    held = cgroups.support()

    assert not held.enforced
    assert "not enforced: no memory, cpu, pids limit in" in held.description
