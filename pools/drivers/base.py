"""The one small interface every infrastructure driver implements.

A driver turns a `WorkspaceSpec` (what a compute profile asks for, under a stable name
derived from the workspace or pool-instance id) into real resources, and back. Every
method is idempotent, because django-q2 delivers tasks at least once and workers die:
`provision` creates what is absent and finds what it already made by `spec.name`;
`deprovision` deletes what is present and succeeds when nothing is left.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field


class DriverError(Exception):
    """Base of the errors a driver raises; `detail` is for administrators only."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class TransientError(DriverError):
    """Worth retrying with backoff: API throttling, a timeout, capacity not there yet."""


class PermanentError(DriverError):
    """Retrying cannot help: bad credentials, an impossible request, a quota at the provider."""


@dataclass(frozen=True)
class GroupSpec:
    """One resource group of a compute profile, as the driver needs it."""

    index: int
    gpu_model: str = ""
    gpu_count: int = 0
    mig_profile: str = ""
    cpu: int = 1
    ram_gb: int = 4
    storage_gb: int = 10
    node_count: int = 1
    instance_type: str = ""


# Set on the spec of a super-sized profile's workspaces: too big for a node group, it gets
# infrastructure of its own where the driver can make it (AWS: a dedicated EKS cluster).
DEDICATED_CLUSTER_LABEL = "gpupaas.io/dedicated-cluster"


@dataclass(frozen=True)
class WorkspaceSpec:
    """What to provision, under a name that never changes for the same workspace."""

    name: str  # e.g. "ws-42" or "pool-17": DNS-1123 safe, used to find existing resources
    owner: str  # username, or "" for a warm-pool instance
    profile: str  # compute profile slug
    profile_version: int
    groups: tuple[GroupSpec, ...]
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, name: str, owner: str, profile, labels=None) -> WorkspaceSpec:
        groups = tuple(
            GroupSpec(
                index=index,
                gpu_model=group.gpu_model,
                gpu_count=group.gpu_count,
                mig_profile=group.mig_profile,
                cpu=group.cpu,
                ram_gb=group.ram_gb,
                storage_gb=group.storage_gb,
                node_count=group.node_count,
                instance_type=group.instance_type,
            )
            for index, group in enumerate(profile.resource_groups.all())
        )
        labels = dict(labels or {})
        if profile.super_sized:
            labels[DEDICATED_CLUSTER_LABEL] = "true"
        return cls(
            name=name,
            owner=owner,
            profile=profile.slug,
            profile_version=profile.version,
            groups=groups,
            labels=labels,
        )


@dataclass
class ProvisionResult:
    """Where a workspace stands on the infrastructure.

    `ready` is False while the infrastructure is still coming up (the task checks again
    later). `connection` is what the user needs to connect (URL, SSH command, environment);
    `detail` is what the driver made (ids, node names), recorded for administrators and
    for finding the resources again.
    """

    ready: bool
    connection: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    gpu_model: str
    uuid: str = ""
    memory_mib: int = 0
    mig_enabled: bool = False


@dataclass(frozen=True)
class NodeInfo:
    name: str
    gpus: tuple[GpuInfo, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


Reporter = Callable[[str], None]
"""Receives human-readable progress steps ("namespace created", "pod scheduled on X")."""


def ignore_progress(message: str) -> None:
    """A Reporter for callers that do not show progress."""


class Driver(ABC):
    """Provision, inspect and remove workspaces on one infrastructure entry."""

    def __init__(self, infrastructure):
        self.infrastructure = infrastructure

    @abstractmethod
    def provision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        """Create whatever of the workspace is absent; return where it stands."""

    @abstractmethod
    def status(self, spec: WorkspaceSpec) -> ProvisionResult:
        """Where the workspace stands now, without changing anything."""

    @abstractmethod
    def deprovision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Delete whatever of the workspace is present; succeed when nothing is left."""

    @abstractmethod
    def stop(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Stop the workspace's compute and release its GPUs, keeping its data (files,
        volumes, cluster); succeed when it is already stopped."""

    @abstractmethod
    def start(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        """Take GPUs and run the stopped workspace again; return where it stands (like
        `provision`: `ready` is False while it comes up). Calling it again is harmless."""

    def check(self, spec: WorkspaceSpec) -> list[str]:
        """What is wrong with a ready workspace now, in a user's words ([] when nothing is),
        without changing anything (`pools.watch`). By default: what `status` says."""
        result = self.status(spec)
        if result.ready:
            return []
        return [result.detail.get("reason") or f"{spec.name} is not ready on {self.infrastructure}"]

    def repair(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Bring back what a failed `check` found missing, keeping the workspace's data;
        PermanentError when it cannot be brought back. By default: `provision` again, which
        creates only what is absent."""
        self.provision(spec, report)

    @abstractmethod
    def inventory(self) -> list[NodeInfo]:
        """The nodes and GPUs this infrastructure has."""

    @abstractmethod
    def managed_names(self) -> set[str]:
        """Names of the workspaces whose resources exist here (to reap orphans)."""
