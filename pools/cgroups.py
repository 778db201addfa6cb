"""CPU, memory and task limits of a local workspace: a control group of its own.

Local workspaces share their machine. Without limits one job that allocates all memory
gets the portal, its database or another workspace killed by the kernel's OOM killer, and
one that forks without end or spins every core starves them all. So each workspace's
processes (its own and its services') run in one control group per workspace, holding:

- memory: the profile's RAM, swap included (the OOM killer then picks inside the group);
- CPU: the profile's CPUs as a quota per 100 ms period;
- tasks: at most `TASKS_MAX` processes and threads, against fork bombs.

The group is made (or its limits updated) at every start, so a restart after a reboot or a
profile change gets the current limits, and removed with the workspace. A process joins it
before it runs anything (`join_argv` puts `pools/cgroup_join.py` in front of its command),
so nothing it forks is ever outside.

Where: with cgroup v1 (one hierarchy per controller), below the portal's own group in each
hierarchy, so the portal's own limits (a container's, say) still cover its workspaces.
With cgroup v2 a group with processes cannot hand controllers to its children, so the
workspaces' groups go below a top-level `portal-workspaces` group, as Docker's cgroupfs
driver does. Both need a portal running as root. `support()` probes once per process and
says what holds, for the infrastructure's status and the self-service page.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from pools import isolation
from pools.drivers.base import TransientError

CGROUP_ROOT = Path("/sys/fs/cgroup")
MOUNTINFO = Path("/proc/self/mountinfo")
OWN_GROUPS = Path("/proc/self/cgroup")
PARENT = "portal-workspaces"
CONTROLLERS = ("memory", "cpu", "pids")  # v1 hierarchies needed; v2 controllers enabled
CPU_PERIOD = 100_000  # microseconds
# Enough for a Ray cluster's many workers and threads, far below the host's pid_max.
TASKS_MAX = 16_384
JOIN = Path(__file__).with_name("cgroup_join.py")


@dataclass(frozen=True)
class Limits:
    """What a workspace may use at most: its profile's CPUs and memory, summed over its
    resource groups (on the local driver they all run on this one machine)."""

    cpus: float
    memory_bytes: int

    @classmethod
    def of(cls, spec) -> Limits:
        cpus = sum(group.cpu * group.node_count for group in spec.groups)
        memory_gb = sum(group.ram_gb * group.node_count for group in spec.groups)
        return cls(cpus=float(cpus), memory_bytes=int(memory_gb * 2**30))

    def describe(self) -> str:
        cpus = f"{self.cpus:g} CPU" + ("" if self.cpus == 1 else "s")
        return f"{cpus}, {self.memory_bytes / 2**30:g} GiB memory"


@dataclass(frozen=True)
class Support:
    version: str  # "v1", "v2", or "" where limits are not enforced
    description: str  # what holds, in one sentence, for the infrastructure's status
    parents: tuple[Path, ...] = ()  # where workspaces' groups go: one per hierarchy

    @property
    def enforced(self) -> bool:
        return bool(self.version)


_probed: dict[tuple, Support] = {}


def support() -> Support:
    """Whether this host limits local workspaces, and how (probed once per setting)."""
    key = (getattr(settings, "LOCAL_WORKSPACE_LIMITS", "auto"), os.geteuid())
    if key not in _probed:
        _probed[key] = _probe(*key)
    return _probed[key]


def _probe(setting: str, euid: int) -> Support:
    if setting == "off":
        return Support("", "CPU and memory limits are turned off (LOCAL_WORKSPACE_LIMITS=off).")
    if euid != 0:
        return Support("", "CPU and memory limits need a portal running as root.")
    try:
        mounts = _mounts()
        own = _own_groups()
    except OSError as error:
        return Support("", f"CPU and memory limits: cgroups cannot be read here ({error}).")
    if "" in mounts:  # the unified hierarchy holds the controllers: v2
        parents = (mounts[""] / PARENT,)
        version = "v2"
    else:
        missing = [c for c in CONTROLLERS if c not in mounts]
        if missing:
            why = f"no cgroup hierarchy for {', '.join(missing)}"
            return Support("", f"CPU and memory limits are not enforced: {why}.")
        parents = tuple(
            dict.fromkeys(mounts[c] / own.get(c, "").lstrip("/") / PARENT for c in CONTROLLERS)
        )
        version = "v1"
    probe = f"probe-{os.getpid()}"
    try:
        _make(parents, version)
        made = _make_group(parents, probe)
        _write_limits(made, version, Limits(cpus=1, memory_bytes=2**30))
    except OSError as error:
        return Support("", f"CPU and memory limits are not enforced: {error}.")
    finally:
        _remove(parent / probe for parent in parents)
    description = (
        f"Each workspace's CPUs and memory are limits (cgroup {version}): a job that uses "
        "more memory than its profile gives is stopped, and one busy on every core gets only "
        "its profile's CPUs."
    )
    return Support(version, description, parents)


def _mounts() -> dict[str, Path]:
    """Mount points of the cgroup hierarchies: v1 ones by controller, v2's under ""."""
    found: dict[str, Path] = {}
    for line in MOUNTINFO.read_text().splitlines():
        mount, _, tail = line.partition(" - ")
        fields_ = mount.split()
        fstype, _source, options = (tail.split() + ["", "", ""])[:3]
        point = Path(fields_[4].encode().decode("unicode_escape"))
        if fstype == "cgroup":
            for option in options.split(","):
                if option in CONTROLLERS:
                    found.setdefault(option, point)
        elif fstype == "cgroup2" and _v2_controllers(point) >= set(CONTROLLERS):
            found.setdefault("", point)
    return found


def _v2_controllers(point: Path) -> set[str]:
    with contextlib.suppress(OSError):
        return set((point / "cgroup.controllers").read_text().split())
    return set()


def _own_groups() -> dict[str, str]:
    """This process's group in each v1 hierarchy, by controller ("4:memory:/a/b")."""
    own = {}
    for line in OWN_GROUPS.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            own[controller] = path
    return own


def _make(parents: tuple[Path, ...], version: str) -> None:
    for parent in parents:
        parent.mkdir(exist_ok=True)
    if version == "v2":
        wanted = " ".join(f"+{c}" for c in CONTROLLERS)
        (parents[0] / "cgroup.subtree_control").write_text(wanted)


def _make_group(parents: tuple[Path, ...], name: str) -> tuple[Path, ...]:
    groups = tuple(parent / name for parent in parents)
    for group in groups:
        group.mkdir(exist_ok=True)
    return groups


def _write_limits(groups: tuple[Path, ...], version: str, limits: Limits) -> None:
    """Write every limit; an OSError when one of them has no file to go to (a v1
    hierarchy without that controller), so a group is never taken for limited when it
    is not."""
    memory = str(limits.memory_bytes)
    quota = max(math.ceil(limits.cpus * CPU_PERIOD), 1000)
    written = set()
    for group in groups:
        files = {entry.name for entry in os.scandir(group)}
        if version == "v2":
            _write(group / "memory.max", memory)
            if "memory.swap.max" in files:
                _write(group / "memory.swap.max", "0")
            _write(group / "cpu.max", f"{quota} {CPU_PERIOD}")
            _write(group / "pids.max", str(TASKS_MAX))
            written.update(CONTROLLERS)
            continue
        if "memory.limit_in_bytes" in files:
            _write_v1_memory(group, limits.memory_bytes, "memory.memsw.limit_in_bytes" in files)
            written.add("memory")
        if "cpu.cfs_quota_us" in files:
            _write(group / "cpu.cfs_period_us", str(CPU_PERIOD))
            _write(group / "cpu.cfs_quota_us", str(quota))
            written.add("cpu")
        if "pids.max" in files:
            _write(group / "pids.max", str(TASKS_MAX))
            written.add("pids")
    missing = [c for c in CONTROLLERS if c not in written]
    if missing:
        raise OSError(f"no {', '.join(missing)} limit in {', '.join(map(str, groups))}")


def _write_v1_memory(group: Path, memory: int, swap_accounted: bool) -> None:
    """Memory and memory+swap to the same value (no swap beyond it). memsw may never be
    below the memory limit, so the one that grows is written first."""
    names = ["memory.limit_in_bytes"]
    if swap_accounted:
        current = int((group / "memory.limit_in_bytes").read_text())
        names.append("memory.memsw.limit_in_bytes")
        if memory > current:
            names.reverse()
    for name in names:
        _write(group / name, str(memory))


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as error:
        raise OSError(f"{path}: {value}: {error.strerror or error}") from error


def _remove(groups) -> None:
    """Remove the groups of a workspace that is gone (or of the probe).

    What is still inside belongs to that workspace: it is killed (and reaped when it is
    this process's child: a zombie keeps its group busy), and the group is removed once
    its members are gone. One whose members will not go within REMOVE_WAIT stays.
    """
    for group in groups:
        deadline = time.monotonic() + REMOVE_WAIT
        while True:
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as error:
                if error.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                if error.errno == errno.ENOTEMPTY or time.monotonic() > deadline:
                    break  # it stays
            _end_members(group)
            time.sleep(0.05)


REMOVE_WAIT = 2.0  # seconds


def _end_members(group: Path) -> None:
    """Kill the processes in `group`, and reap those that are this process's children."""
    with contextlib.suppress(OSError):
        members = [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


# -- per workspace ----------------------------------------------------------------------


def join_argv(workspace: Path, limits: Limits | None) -> list[str]:
    """The command that runs the rest inside the workspace's group, made (or updated) now
    with `limits`; [] where limits are not enforced or none are given.

    A start must not run unlimited where limits hold: a group that cannot be made fails it
    (TransientError: the task retries).
    """
    held = support()
    if limits is None or not held.enforced:
        return []
    name = isolation.network_name(workspace)  # unique per workspace directory on the host
    try:
        _make(held.parents, held.version)
        groups = _make_group(held.parents, name)
        _write_limits(groups, held.version, limits)
    except OSError as error:
        raise TransientError(f"No cgroup for {workspace.name}.", str(error)) from error
    procs = [str(group / "cgroup.procs") for group in groups]
    return [sys.executable, "-I", str(JOIN), *procs, "--"]


def groups_of(workspace: Path) -> list[Path]:
    """The workspace's groups that exist now."""
    held = support()
    name = isolation.network_name(workspace)
    return [parent / name for parent in held.parents if (parent / name).is_dir()]


def forget(workspace: Path) -> None:
    """Remove the workspace's groups, ending what is still inside (`_remove`)."""
    _remove(groups_of(workspace))


def describe_host() -> tuple[bool, str]:
    """(isolated, what holds) for the local infrastructure's status: the sandbox and the
    network (`pools.isolation.describe`), then the limits."""
    isolated, description = isolation.describe()
    return isolated, f"{description} {support().description}"
