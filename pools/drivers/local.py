"""The local driver: workspaces on the portal's own machine.

A workspace is
1. a directory `<WORKSPACES_ROOT>/<name>` holding a marker file (so the sweep can tell our
   directories from anything else under the root),
2. an allocation of this machine's GPUs or MIG devices from the NVML inventory, recorded as
   `GpuAllocation` rows (a unique constraint per device: two workspaces never share one),
3. an environment file with `CUDA_VISIBLE_DEVICES` set to the allocated UUIDs, and the
   shell command that enters the workspace,
4. optionally a supervised process (`pools.supervisor`), recorded in `process.json` and in
   the supervisor's registry.

Where the host can, the directory belongs to the workspace's own identity (mode 0700) and
its processes run isolated from the portal and from each other (`pools.isolation`). The
directory's contents are then the workspace's to change: the portal writes its files there
without following links, and takes the environment of a process from the database, not
from the file.

Everything is found again by the workspace's stable name, so provisioning twice makes one
set of resources, and deprovisioning deletes whatever of it is present (a directory that
another deprovisioning removed first included).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from pools import cgroups, devices, gpucheck, isolation, supervisor
from pools.drivers.base import (
    Driver,
    DriverError,
    GpuInfo,
    NodeInfo,
    PermanentError,
    ProvisionResult,
    Reporter,
    TransientError,
    WorkspaceSpec,
    ignore_progress,
)
from pools.isolation import workspaces_root
from pools.models import GpuAllocation, GpuFault
from profiles.mig import catalog, layout, placement
from profiles.mig.nvml import inventory

MARKER = ".portal-workspace"
ENV_FILE = "workspace.env"
PROCESS_FILE = "process.json"


def gpu_inventory() -> list:
    """This host's GPUs from NVML (`[]` on a CPU-only host)."""
    return list(inventory().gpus)


Device = tuple[str, int, str, str]  # (uuid, gpu index, gpu name, MIG profile or "")


def choose_devices(holder: str, groups, gpus, taken: set[str]):
    """[(group, device)] for every unit of every group, or None when they cannot all fit.

    This host becomes a fleet for the placement engine: a GPU with MIG off is a whole GPU,
    one with MIG on offers its MIG devices as slots (it is only handed out as slices, so
    one without MIG devices yet offers nothing). Devices in `taken` are held by others; a
    GPU whose own UUID is in it is held whole, its slices included.
    """
    fleet, devices = [], {}
    for gpu in gpus:
        model = gpu.gpu_model or gpu.name
        if gpu.mig_enabled:
            if not gpu.gpu_model:
                continue  # slices of a GPU outside the MIG catalog cannot be placed
            slots = []
            for mig, start in _slot_starts(gpu):
                held = "taken" if {mig.uuid, gpu.uuid} & taken else None
                slots.append(placement.Slot(mig.profile, start, allocation=held))
                devices[(gpu.uuid, start)] = (mig.uuid, gpu.index, gpu.name, mig.profile)
            fleet.append(placement.GpuState(gpu.uuid, model, host="local", slots=slots))
        else:
            held = "taken" if gpu.uuid in taken else None
            fleet.append(placement.GpuState(gpu.uuid, model, host="local", allocation=held))
            devices[(gpu.uuid, None)] = (gpu.uuid, gpu.index, gpu.name, "")
    request = placement.Request(
        holder,
        tuple(
            placement.ResourceGroup(
                count=g.gpu_count, gpu_model=g.gpu_model or None, profile=g.mig_profile or None
            )
            for g in groups
        ),
    )
    chosen = placement.place(fleet, request)
    if chosen is None:
        return None
    # The engine answers per unit; hand each group the units of its kind, in order.
    remaining = list(chosen.assignments)
    result = []
    for group in groups:
        for _ in range(group.gpu_count):
            unit = next(
                a
                for a in remaining
                if a.profile == (group.mig_profile or None)
                and (not group.gpu_model or _model_of(gpus, a.gpu_id) == group.gpu_model)
            )
            remaining.remove(unit)
            result.append((group, devices[(unit.gpu_id, unit.start)]))
    return result


def _count_devices(group, gpus) -> int:
    """How many devices of the group's kind this host has, free or not."""
    count = 0
    for gpu in gpus:
        if group.gpu_model and (gpu.gpu_model or gpu.name) != group.gpu_model:
            continue
        if group.mig_profile:
            count += sum(1 for mig in gpu.mig_devices if mig.profile == group.mig_profile)
        elif not gpu.mig_enabled:
            count += 1
    return count


def _offered(gpu) -> list[str]:
    """The UUIDs a GPU is handed out as now: its MIG devices with MIG on, else itself."""
    return [mig.uuid for mig in gpu.mig_devices] if gpu.mig_enabled else [gpu.uuid]


def _gone(allocations, gpus) -> list[GpuAllocation]:
    """The allocations of devices this host no longer offers: their GPU's MIG layout
    changed under their holder (turned on or off, or its instances made again with new
    UUIDs), or NVML cannot read the GPU any more."""
    current = {uuid for gpu in gpus for uuid in _offered(gpu)}
    return [allocation for allocation in allocations if allocation.device_uuid not in current]


def _held_whole(allocations, gpus) -> set[str]:
    """UUIDs of the GPUs an allocation of a device that is gone was on (by UUID, or by
    index for a MIG device): held whole until its holder releases it. Its sandbox still
    has the GPU's device node, and the capability nodes of its GPU instance, which a slice
    made again with the same instance id would share."""
    return {
        gpu.uuid
        for allocation in _gone(allocations, gpus)
        for gpu in gpus
        if allocation.device_uuid == gpu.uuid or allocation.gpu_index == gpu.index
    }


def _missing(groups, allocations) -> list:
    """The groups with the units they still lack beyond `allocations` (none: [])."""
    held = Counter(allocation.group_index for allocation in allocations)
    return [
        replace(group, gpu_count=group.gpu_count - held[group.index])
        for group in groups
        if group.gpu_count > held[group.index]
    ]


def _model_of(gpus, uuid: str) -> str:
    return next(g.gpu_model or g.name for g in gpus if g.uuid == uuid)


def _model_holding(gpus, uuid: str) -> str | None:
    """The catalog model of the GPU that is, or holds the MIG device, `uuid`; None if no
    GPU of this host does (any more)."""
    for gpu in gpus:
        if gpu.uuid == uuid or any(mig.uuid == uuid for mig in gpu.mig_devices):
            return gpu.gpu_model
    return None


def _slot_starts(gpu) -> list:
    """(MIG device, first memory slice) for each MIG device of the GPU.

    NVML gives the start where it may; otherwise the layout is laid out again from its
    profile counts (slices of one profile on one GPU are interchangeable to a user).
    """
    devices = _gpu_instances(gpu)
    if all(getattr(mig, "start", None) is not None for mig in devices):
        return [(mig, mig.start) for mig in devices]
    counts = Counter(mig.profile for mig in devices)
    laid_out = layout.validate_layout(gpu.gpu_model, counts)
    by_profile: dict[str, list] = {}
    for mig in devices:
        by_profile.setdefault(mig.profile, []).append(mig)
    return [(by_profile[p.profile].pop(0), p.start) for p in laid_out.placements]


def _gpu_instances(gpu) -> list:
    """The GPU's MIG devices that are whole GPU instances of a profile of its model. A GPU
    instance divided into compute instances (`nvidia-smi mig -cci`) shows as one device
    per compute instance, named like 1c.3g.20gb and all at the instance's first memory
    slice: none of them is a GPU instance to hand out, so the host's other GPUs and slices
    are placed as if they were not there."""
    profiles = {profile.name for profile in catalog.geometry(gpu.gpu_model).profiles}
    starts = Counter(getattr(mig, "start", None) for mig in gpu.mig_devices)
    return [
        mig
        for mig in gpu.mig_devices
        if mig.profile in profiles
        and (getattr(mig, "start", None) is None or starts[mig.start] == 1)
    ]


class LocalDriver(Driver):
    def directory(self, name: str) -> Path:
        return workspaces_root() / name

    # -- provision ---------------------------------------------------------------------

    def provision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        try:
            return self._provision(spec, report)
        except Exception:
            # All or nothing: release what this call (or an earlier one) made, then fail.
            self.deprovision(spec)
            raise

    def _provision(self, spec: WorkspaceSpec, report: Reporter) -> ProvisionResult:
        directory = self.directory(spec.name)
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(exist_ok=True)
        uid = isolation.prepare(directory)
        supervisor.write_file(directory / MARKER, spec.name + "\n")
        report(f"directory {directory} created" + (f", owned by uid {uid}" if uid else ""))

        self._take_gpus(spec, report)
        self._check_gpus(spec, report)
        return self.status(spec)

    def _take_gpus(self, spec: WorkspaceSpec, report: Reporter) -> None:
        """Allocate the GPUs (or find the earlier allocation) and write the environment."""
        directory = self.directory(spec.name)
        allocations = self._allocate(spec)
        for allocation in allocations:
            report(f"{allocation.label} ({allocation.gpu_name}) assigned")
        if not allocations:
            report("no GPU requested: CPU-only workspace")

        env = self._environment(spec, allocations)
        lines = [f"{key}={shlex.quote(value)}" for key, value in env.items()]
        supervisor.write_file(directory / ENV_FILE, "\n".join(lines) + "\n")
        report("environment file written")

    def _check_gpus(self, spec: WorkspaceSpec, report: Reporter) -> None:
        """Report what CUDA sees, run as the workspace's processes run (`pools.gpucheck`),
        unless that is not exactly its GPUs: then a TransientError where a GPU is to blame
        (it is held back, so the retry lands on another), else a PermanentError, each
        saying what CUDA said."""
        allocations = list(self._allocations(spec))
        if not allocations or settings.LOCAL_GPU_CHECK != "cuda":
            return
        uuids = [a.device_uuid for a in allocations]
        env = dict(os.environ) | self._environment(spec, allocations)
        nodes = self.device_nodes(spec)
        seen = []
        for visible in gpucheck.runs(uuids):  # one MIG device per CUDA process
            done = self._probe(spec, env | {"CUDA_VISIBLE_DEVICES": ",".join(visible)}, nodes)
            problem, what = gpucheck.judge(done, visible)
            if problem:
                raise self._check_failed(problem, gpucheck.unseen(done, visible), allocations)
            seen.append(what)
        GpuFault.objects.filter(infrastructure=self.infrastructure, device_uuid__in=uuids).delete()
        report(f"CUDA sees {', '.join(seen)}")

    def _probe(self, spec: WorkspaceSpec, env: dict[str, str], nodes: list[str]):
        try:
            return supervisor.run_once(
                [sys.executable, "-I", "-c", gpucheck.PROBE],
                self.directory(spec.name),
                env,
                devices=nodes,
                limits=self.limits(spec),
                timeout=gpucheck.TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise TransientError(
                f"CUDA did not start within {gpucheck.TIMEOUT} s in the workspace."
            ) from None

    def _check_failed(self, problem: str, unseen: list[str], allocations) -> DriverError:
        """A GPU is to blame only where CUDA misses it outside the sandbox too (asked alone,
        on the host); otherwise the sandbox is, or CUDA on this host as a whole, and no
        other GPU would do better."""
        faulty = [uuid for uuid in unseen if not gpucheck.seen_on_host(uuid)]
        if unseen and not faulty:
            return PermanentError(
                f"{problem} Outside the workspace's sandbox CUDA sees it: the sandbox lacks "
                "what it needs (see this machine's status)."
            )
        if not faulty:
            return PermanentError(problem)
        for allocation in allocations:
            if allocation.device_uuid in faulty:
                GpuFault.objects.update_or_create(
                    infrastructure=self.infrastructure,
                    device_uuid=allocation.device_uuid,
                    defaults={
                        "gpu_index": allocation.gpu_index,
                        "reason": problem,
                        "seen": timezone.now(),
                    },
                )
        # Released with the rest of this attempt; the next one is placed on other GPUs.
        return TransientError(
            f"{problem} {', '.join(faulty)} is held back from new workspaces for "
            f"{GpuFault.HOLD.seconds // 60} minutes."
        )

    def environment(self, spec: WorkspaceSpec) -> dict[str, str]:
        """The workspace's own variables from its GPU allocations in the database (what the
        environment file says, which the workspace itself may have edited, is not trusted)."""
        return self._environment(spec, self._allocations(spec))

    def device_nodes(self, spec: WorkspaceSpec) -> list[str]:
        """The device nodes of the GPUs allocated to the workspace: its processes may open
        those and no others (`supervisor.start`, `pools.devices`). DeviceError (an OSError)
        when they cannot be known. None are needed where nothing is sandboxed: unsandboxed
        processes see the host's /dev."""
        if not isolation.host_capability().isolated:
            return []
        uuids = list(self._allocations(spec).values_list("device_uuid", flat=True))
        return devices.nodes_for(uuids, gpu_inventory()) if uuids else []

    @staticmethod
    def limits(spec: WorkspaceSpec) -> cgroups.Limits:
        """What the workspace's processes may use together: its profile's CPUs and memory
        (enforced where the host can, `pools.cgroups`)."""
        return cgroups.Limits.of(spec)

    def _allocations(self, spec: WorkspaceSpec):
        return GpuAllocation.objects.filter(infrastructure=self.infrastructure, holder=spec.name)

    def _environment(self, spec: WorkspaceSpec, allocations) -> dict[str, str]:
        return {
            "WORKSPACE_NAME": spec.name,
            "WORKSPACE_DIR": str(self.directory(spec.name)),
            "CUDA_VISIBLE_DEVICES": ",".join(a.device_uuid for a in allocations),
        }

    def _allocate(self, spec: WorkspaceSpec) -> list[GpuAllocation]:
        """Claim devices for every group in one transaction, or none of them.

        Which devices is the fleet placement engine's choice (profiles.mig.placement), the
        same one that places slices across a cluster, so this host's free capacity stays
        usable for the next request. What the workspace holds already counts (an earlier
        attempt's allocation; what a repair kept): only the units it lacks are claimed.
        """
        infrastructure = self.infrastructure
        held = list(self._allocations(spec))
        wanted = _missing(spec.groups, held)
        if not wanted:
            return held  # CPU-only, or already allocated
        gpus = gpu_inventory()
        try:
            with transaction.atomic():
                allocations = list(GpuAllocation.objects.filter(infrastructure=infrastructure))
                taken = {allocation.device_uuid for allocation in allocations}
                taken |= _held_whole(allocations, gpus)
                held_back = list(GpuFault.held_back(infrastructure))
                taken |= {fault.device_uuid for fault in held_back}
                chosen = choose_devices(spec.name, wanted, gpus, taken)
                if chosen is None:
                    raise self._no_room(wanted, gpus, held_back)
                return held + [
                    GpuAllocation.objects.create(
                        infrastructure=infrastructure,
                        holder=spec.name,
                        group_index=group.index,
                        device_uuid=uuid,
                        gpu_index=index,
                        gpu_name=name,
                        mig_profile=mig,
                    )
                    for group, (uuid, index, name, mig) in chosen
                ]
        except IntegrityError as error:
            raise TransientError(
                "Another workspace took the same GPU at the same moment.", str(error)
            ) from error

    def _no_room(self, wanted, gpus, held_back) -> DriverError:
        """Permanent when this machine could never hold the request, else transient."""
        for group in wanted:
            have = _count_devices(group, gpus)
            if have < group.gpu_count:
                return PermanentError(
                    f"This machine has {have} {self._describe(group)}; "
                    f"the profile asks for {group.gpu_count}."
                )
        if choose_devices("probe", wanted, gpus, taken=set()) is None:
            needs = ", ".join(f"{g.gpu_count}× {self._describe(g)}" for g in wanted)
            return PermanentError(f"This machine cannot hold {needs} at once.")
        models = {group.gpu_model for group in wanted}
        faults = "".join(
            f" GPU {fault.gpu_index} is held back until {fault.until:%H:%M}: {fault.reason}"
            for fault in held_back
            if _model_holding(gpus, fault.device_uuid) in models
        )
        return TransientError(
            f"The GPUs this profile needs are in use{' or held back' if faults else ''}: "
            + ", ".join(self._describe(g) for g in wanted)
            + "."
            + faults
        )

    @staticmethod
    def _describe(group) -> str:
        model = group.gpu_model or "GPU"
        return f"{model} MIG {group.mig_profile} slices" if group.mig_profile else f"{model} GPUs"

    # -- status ------------------------------------------------------------------------

    def status(self, spec: WorkspaceSpec) -> ProvisionResult:
        directory = self.directory(spec.name)
        allocations = list(self._allocations(spec))
        env_ready = (directory / ENV_FILE).exists()
        gpus_ready = len(allocations) == sum(g.gpu_count for g in spec.groups)
        process = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
        process_ready = process is None or supervisor.healthy(process)
        # For an administrator on the host: in the workspace's network, where its services
        # are (a Ray driver needs all of the cluster's ports), when it has one.
        network = isolation.network_path(directory)
        enter = f"nsenter --net={shlex.quote(str(network))} -- " if network else ""
        shell = (
            f"cd {shlex.quote(str(directory))} && set -a && . ./{ENV_FILE} && set +a && "
            f"exec {enter}$SHELL"
        )
        connection = {"shell": shell, "directory": str(directory)}
        if process and process.port:
            connection["url"] = f"http://127.0.0.1:{process.port}/"
        held = cgroups.support()
        detail = {
            "directory": str(directory),
            "devices": [a.device_uuid for a in allocations],
            "pid": process.pid if process else None,
            "limits": self.limits(spec).describe() if held.enforced else "none",
        }
        return ProvisionResult(
            ready=env_ready and gpus_ready and process_ready,
            connection=connection,
            detail=detail,
        )

    # -- supervised process (services profiles, issue 7) --------------------------------

    def start_process(
        self, spec: WorkspaceSpec, argv: list[str], port: int | None = None
    ) -> supervisor.ProcessRecord:
        """Start `argv` in the workspace's directory and environment, once.

        The environment comes from the GPU allocations (what the environment file says,
        which the workspace itself may have edited, is not trusted).
        """
        directory = self.directory(spec.name)
        existing = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
        if existing and supervisor.is_running(existing):
            return existing
        if existing:
            # It ended (or was stopped): unregister it, and stop what is left of its session
            # (a sandbox whose bubblewrap was killed leaves the command inside running).
            supervisor.stop_session(existing)
        env = dict(os.environ) | self.environment(spec)
        record = supervisor.start(
            argv,
            directory,
            env,
            directory / "process.log",
            port=port,
            holder=spec.name,
            infrastructure=self.infrastructure,
            devices=self.device_nodes(spec),
            limits=self.limits(spec),
        )
        record.save(directory / PROCESS_FILE)
        return record

    # -- stop / start (issue 5) ---------------------------------------------------------

    def stop(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Stop every process of the workspace and release its GPUs; keep its directory.

        The workspace's own process stays registered, ended, so `start` runs the same
        command on the same port again (the registry says what; `process.json`, which the
        workspace may change, does not). Services stacks are
        stopped (and later redeployed) by the tasks (`services.tasks.stop_for_target`);
        whatever of them still runs in the directory is stopped here too.
        """
        self._stop_processes(spec, report, keep=True)
        self._release_gpus(spec, report)

    def start(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        """Allocate GPUs again (possibly other devices than before) and restart the process.

        All or nothing: a start that fails releases the GPUs it took, and keeps the files.
        """
        directory = self.directory(spec.name)
        if not (directory / MARKER).exists():
            raise PermanentError(f"The workspace's directory {directory} is gone.")
        try:
            self._take_gpus(spec, report)
            self._check_gpus(spec, report)
            self._restart_process(spec, report)
        except Exception:
            self._release_gpus(spec, ignore_progress)
            raise
        return self.status(spec)

    def _restart_process(self, spec: WorkspaceSpec, report: Reporter) -> None:
        """Run the workspace's own process again (same command, same port) unless it is
        healthy; one alive that no longer answers on its port is stopped first."""
        process = supervisor.ProcessRecord.registered_at(self.directory(spec.name) / PROCESS_FILE)
        if process is None or supervisor.healthy(process):
            return
        supervisor.stop_session(process)  # alive but not answering, or what it left behind
        process = self.start_process(spec, process.argv, port=process.port)
        report(f"process {process.pid} started")

    # -- watched workspaces (issue 12) ---------------------------------------------------

    def check(self, spec: WorkspaceSpec) -> list[str]:
        """Its directory is there, it holds every GPU it was given, its process (if it
        has one) is alive and answers on its port, and its HTTPS proxy (if it has one)
        runs, with the rules the settings give now (the repair replaces one with old
        rules). This machine is the node: it is alive."""
        directory = self.directory(spec.name)
        problems = []
        if not directory.is_dir():
            problems.append(f"Its directory {directory} is gone.")
        allocations = list(self._allocations(spec))
        wanted = sum(group.gpu_count for group in spec.groups)
        if len(allocations) < wanted:
            problems.append(f"It holds {len(allocations)} of its {wanted} GPU allocations.")
        if allocations:
            problems += [
                f"Its {allocation.label} ({allocation.device_uuid}) is gone from this machine."
                for allocation in _gone(allocations, gpu_inventory())
            ]
        process = supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)
        if process is not None and not supervisor.healthy(process):
            if supervisor.is_running(process):
                problems.append(f"Its process does not answer on port {process.port}.")
            else:
                problems.append(f"Its process {process.pid} exited.")
        proxy = supervisor.egress_process(directory)
        if proxy is not None and not supervisor.is_running(proxy):
            problems.append(f"Its HTTPS proxy (its way to the internet) {proxy.pid} exited.")
        elif proxy is not None and (old := supervisor.old_egress_rules(proxy)):
            problems.append(
                f"Its HTTPS proxy (its way to the internet) runs with old rules: {old}."
            )
        return problems

    def repair(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Take its GPUs again and restart its process; a directory that is gone cannot be
        brought back (its files went with it): PermanentError.

        Allocations of devices that are gone are dropped first, after its processes are
        stopped: they were given those devices' nodes, which a device made again in their
        place (another workspace's) would share. Its own process then starts again on
        what replaces them."""
        directory = self.directory(spec.name)
        if not directory.is_dir():
            raise PermanentError(f"Its directory {directory} is gone, and its files with it.")
        supervisor.write_file(directory / MARKER, spec.name + "\n")
        proxied = supervisor.egress_process(directory) is not None
        dropped = _gone(self._allocations(spec), gpu_inventory())
        if dropped:
            self._stop_processes(spec, report, keep=True)
        for allocation in dropped:
            allocation.delete()
            report(f"{allocation.label} ({allocation.device_uuid}) is gone: allocation dropped")
        self._take_gpus(spec, report)
        self._check_gpus(spec, report)
        self._restart_process(spec, report)
        if proxied:  # it had one: it has one, with the rules of now (none if no way out)
            supervisor.ensure_egress(directory, spec.name, self.infrastructure, self.limits(spec))

    def _stop_processes(self, spec: WorkspaceSpec, report: Reporter, keep: bool = False) -> None:
        """Every registered process of the directory, then (with an identity of its own)
        anything else still running as the workspace: nothing of it outlives a stop.
        `keep`: the workspace's own process stays registered, for `start`."""
        directory = self.directory(spec.name)
        kept = [directory / PROCESS_FILE] if keep else []
        for path in supervisor.stop_recorded_below(directory, PROCESS_FILE, keep=kept):
            report(f"process {os.path.relpath(path.parent, directory)} stopped")
        uid = isolation.identity_of(directory)
        if uid is not None and (killed := isolation.kill_identity(uid)):
            report(f"{killed} other process(es) of uid {uid} killed")

    def _release_gpus(self, spec: WorkspaceSpec, report: Reporter) -> None:
        released, _ = self._allocations(spec).delete()
        if released:
            report(f"{released} GPU allocation(s) released")

    # -- deprovision -------------------------------------------------------------------

    def deprovision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        directory = self.directory(spec.name)
        self._stop_processes(spec, report)
        isolation.forget_network(directory)
        cgroups.forget(directory)
        self._release_gpus(spec, report)
        if os.path.lexists(directory):
            supervisor.remove_tree(directory)  # gone already (another deprovisioning): fine
            report(f"directory {directory} removed")

    # -- inventory ---------------------------------------------------------------------

    def inventory(self) -> list[NodeInfo]:
        gpus = tuple(
            GpuInfo(
                index=gpu.index,
                gpu_model=gpu.gpu_model or gpu.name,
                uuid=gpu.uuid,
                mig_enabled=gpu.mig_enabled,
            )
            for gpu in gpu_inventory()
        )
        return [NodeInfo(name=socket.gethostname(), gpus=gpus)]

    def managed_names(self) -> set[str]:
        root = workspaces_root()
        names = set()
        if root.exists():
            names = {path.parent.name for path in root.glob(f"*/{MARKER}")}
        names |= set(
            GpuAllocation.objects.filter(infrastructure=self.infrastructure).values_list(
                "holder", flat=True
            )
        )
        return names
