"""The AWS driver: GPU capacity as EKS managed node groups (boto3).

Each resource group of a workspace becomes one managed node group `<spec.name>-g<index>`
of `node_count` nodes (min = max = desired) on one instance type: the group's own, or the
smallest instance type enabled on the infrastructure whose GPU model and count fit. GPU
node groups use the NVIDIA AMI, carry the `nvidia.com/gpu` NoSchedule taint and the
`gpupaas.io/workspace` / `gpupaas.io/group` node labels; every node group and cluster is
tagged `app.kubernetes.io/managed-by=gpu-paas-portal`, `gpupaas.io/workspace` and
`gpupaas.io/infrastructure=<entry id>`. An entry counts (in its inventory, and in what
the sweep may reap) only node groups and dedicated clusters tagged with its own id: another
entry's may be on a cluster it lists (one whose name starts with its cluster's, or the
same cluster, which entries saved before the form refused that may share).

Node groups live on the infrastructure's EKS cluster (created when missing). A workspace
of a super-sized profile (its spec carries `gpupaas.io/dedicated-cluster=true`, which
`WorkspaceSpec.from_profile` sets) gets its own cluster `<cluster>-<spec.name>` instead,
tagged with the workspace, and deleted with it. A workspace's node groups stay on the
cluster they were made on when its profile becomes super-sized, or no longer, later.

Creation is idempotent: node groups and clusters are looked up by name first, created with
a stable clientRequestToken (a digest of the cluster and node group names: one per
resource, within the 64 characters EKS allows), and a ResourceInUseException on create
means a concurrent attempt won. Readiness: the cluster and every node group ACTIVE.
Deprovisioning finds the workspace's node groups by name on both clusters, deletes them
(ResourceNotFoundException = done) and raises TransientError until they are gone, so the
task retries; then the dedicated cluster (only one tagged with the workspace) the same
way. Stop finds them by name the same way and scales each to 0 nodes.

Settings, from the infrastructure's `credentials` (or the constructor): `cluster_name`
(the form stores "gpu-paas-<infrastructure name>" at the first save when none is given, so
a rename keeps the cluster; an entry made another way without one gets that name from its
current name), `cluster_role_arn`, `node_role_arn`,
`subnet_ids` and `security_group_ids` (lists or comma-separated strings).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from pools.drivers import k8s_manifests as m
from pools.drivers.base import (
    DEDICATED_CLUSTER_LABEL,
    Driver,
    DriverError,
    GpuInfo,
    GroupSpec,
    NodeInfo,
    PermanentError,
    ProvisionResult,
    Reporter,
    TransientError,
    WorkspaceSpec,
    ignore_progress,
)
from profiles import aws_checks, catalog
from profiles.mig import catalog as mig_catalog

GPU_AMI = "AL2023_x86_64_NVIDIA"
CPU_AMI = "AL2023_x86_64_STANDARD"
TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "ServerException",
    "ResourceInUseException",
    "RequestTimeout",
    "RequestTimeoutException",
}
NOT_FOUND = "ResourceNotFoundException"
# The entry (Infrastructure pk) whose workspace a node group or cluster belongs to.
INFRASTRUCTURE_TAG = "gpupaas.io/infrastructure"


@dataclass(frozen=True)
class EksSettings:
    cluster_name: str
    cluster_role_arn: str = ""
    node_role_arn: str = ""
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()


def _ids(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(item.strip() for item in value or () if item and item.strip())


def eks_settings_from(infrastructure) -> EksSettings:
    credentials = infrastructure.credentials or {}
    return EksSettings(
        cluster_name=aws_checks.eks_cluster_name(
            infrastructure.name, credentials.get("cluster_name")
        ),
        cluster_role_arn=credentials.get("cluster_role_arn", ""),
        node_role_arn=credentials.get("node_role_arn", ""),
        subnet_ids=_ids(credentials.get("subnet_ids")),
        security_group_ids=_ids(credentials.get("security_group_ids")),
    )


def nodegroup_name(spec: WorkspaceSpec, group: GroupSpec) -> str:
    return f"{spec.name}-g{group.index}"


def is_dedicated(spec: WorkspaceSpec) -> bool:
    return spec.labels.get(DEDICATED_CLUSTER_LABEL) == "true"


def gpus_needed(group: GroupSpec) -> int:
    """Whole GPUs one node of the group needs (MIG slices packed as tightly as allowed)."""
    if not group.gpu_count or not group.mig_profile:
        return group.gpu_count
    try:
        per_gpu = mig_catalog.profile(group.gpu_model, group.mig_profile).max_count
    except KeyError:
        per_gpu = 1
    return math.ceil(group.gpu_count / per_gpu)


def choose_instance_type(group: GroupSpec, enabled: list) -> str:
    """The group's instance type, or the smallest enabled one that fits; "" if none does.

    `enabled` holds objects with name, gpu_model, gpu_count, vcpu and ram_gb (the
    infrastructure's InstanceType rows); a vcpu or ram_gb of 0 means "not known".
    """
    if group.instance_type:
        return group.instance_type

    def fits(it) -> bool:
        if group.gpu_count and (
            it.gpu_model != group.gpu_model or it.gpu_count < gpus_needed(group)
        ):
            return False
        return (not it.vcpu or it.vcpu >= group.cpu) and (
            not it.ram_gb or it.ram_gb >= group.ram_gb
        )

    candidates = [it for it in enabled if fits(it)]
    if not group.gpu_count:  # CPU only: rather a CPU instance than an idle GPU
        candidates = [it for it in candidates if not it.gpu_count] or candidates
    candidates.sort(key=lambda it: (it.gpu_count, it.vcpu, it.ram_gb, it.name))
    return candidates[0].name if candidates else ""


def translate(error: Exception, what: str) -> DriverError:
    """A boto3 error as the driver's TransientError or PermanentError."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "") or code
        http = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        detail = f"{code} (HTTP {http}): {message}"
        if code in aws_checks.REFUSED_CODES:
            return PermanentError(f"AWS refused the credentials while {what}.", detail)
        if code in TRANSIENT_CODES or http >= 500:
            return TransientError(f"AWS is busy while {what} ({code}); will retry.", detail)
        return PermanentError(f"AWS rejected {what}: {message}", detail)
    if isinstance(error, ParamValidationError):
        return PermanentError(f"The portal sent AWS an invalid request while {what}.", str(error))
    return TransientError(f"Cannot reach AWS while {what}.", str(error))


class AwsDriver(Driver):
    def __init__(self, infrastructure, eks: EksSettings | None = None, session=None):
        super().__init__(infrastructure)
        self.settings = eks or eks_settings_from(infrastructure)
        self.endpoint_url = aws_checks.endpoint_url()
        self._session = session

    @cached_property
    def eks(self):
        session = self._session
        if session is None:
            try:
                session = aws_checks.session_for(
                    self.infrastructure.credentials, self.infrastructure.region, self.endpoint_url
                )
            except aws_checks.AwsCredentialsError as error:
                raise PermanentError(str(error)) from error
            except (ClientError, BotoCoreError) as error:
                raise translate(error, "signing in") from error
        return session.client(
            "eks", endpoint_url=self.endpoint_url, config=aws_checks.CLIENT_CONFIG
        )

    # --- the interface ------------------------------------------------------------------

    def provision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        plan = self._plan(spec)  # every group placed before anything is created
        cluster = self.cluster_name(spec)
        found = self._describe_cluster(cluster)
        if found is None:
            self._create_cluster(spec, cluster)
            report(f"EKS cluster {cluster} creation started")
            found = self._describe_cluster(cluster) or {"status": "CREATING"}
        if found["status"] != "ACTIVE":
            return self._cluster_not_active(cluster, found)
        for group, name, instance_type in plan:
            nodegroup = self._describe_nodegroup(cluster, name)
            if nodegroup is None:
                self._create_nodegroup(spec, cluster, group, name, instance_type)
                report(f"node group {name} ({group.node_count}× {instance_type}) creation started")
            elif nodegroup["status"] == "ACTIVE" and _desired(nodegroup) != group.node_count:
                size = group.node_count
                self._call(
                    f"scaling node group {name}",
                    self.eks.update_nodegroup_config,
                    clusterName=cluster,
                    nodegroupName=name,
                    scalingConfig={"minSize": size, "maxSize": size, "desiredSize": size},
                )
                report(f"node group {name} scaled to {size} nodes")
        return self._observe(spec, cluster, report)

    def status(self, spec: WorkspaceSpec) -> ProvisionResult:
        cluster = self.cluster_name(spec)
        found = self._describe_cluster(cluster)
        if found is None:
            return ProvisionResult(False, detail={"reason": f"EKS cluster {cluster} is missing"})
        if found["status"] != "ACTIVE":
            return self._cluster_not_active(cluster, found)
        return self._observe(spec, cluster, ignore_progress)

    def deprovision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Delete the workspace's node groups wherever they are, then its dedicated cluster.

        Node groups are found by name (`<spec.name>-g<index>`) on the shared cluster and on
        the dedicated one, not from `spec.groups`: the sweep's bare spec of an orphan, and
        a spec whose profile changed since it was provisioned, remove everything too.
        """
        dedicated = self.dedicated_cluster_name(spec)
        remaining: list[str] = []
        for cluster in self._workspace_clusters(spec):
            remaining += self._delete_nodegroups(cluster, spec, report)
        if remaining:
            raise TransientError(f"Node groups {', '.join(remaining)} are still being deleted.")
        found = self._describe_cluster(dedicated)
        if found is None:
            return
        if (found.get("tags") or {}).get(m.WORKSPACE_LABEL) != spec.name:
            report(f"EKS cluster {dedicated} is not tagged as {spec.name}'s; left alone")
            return
        if found["status"] != "DELETING":
            self._delete(f"deleting cluster {dedicated}", self.eks.delete_cluster, name=dedicated)
            report(f"EKS cluster {dedicated} deletion started")
        if self._describe_cluster(dedicated) is not None:
            raise TransientError(f"EKS cluster {dedicated} is still being deleted.")
        report(f"EKS cluster {dedicated} deleted")

    def _delete_nodegroups(self, cluster: str, spec: WorkspaceSpec, report: Reporter) -> list[str]:
        """Start deleting the workspace's node groups on `cluster`; those still there."""
        remaining = []
        for name in self._nodegroup_names_of(cluster, spec):
            nodegroup = self._describe_nodegroup(cluster, name)
            if nodegroup is None:
                continue
            if nodegroup["status"] != "DELETING":
                self._delete(
                    f"deleting node group {name}",
                    self.eks.delete_nodegroup,
                    clusterName=cluster,
                    nodegroupName=name,
                )
                report(f"node group {name} deletion started")
            if self._describe_nodegroup(cluster, name) is not None:
                remaining.append(name)
            else:
                report(f"node group {name} deleted")
        return remaining

    def stop(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Scale the workspace's node groups to 0 nodes; the cluster (dedicated or shared)
        and the node groups stay, so `start` only scales them back.

        Like `deprovision`, node groups are found by name on both clusters, not from
        `spec.groups`: the profile may have lost a group, or become super-sized, since
        the workspace was provisioned, and a stopped workspace must run no node.
        """
        for cluster in self._workspace_clusters(spec):
            for name in self._nodegroup_names_of(cluster, spec):
                nodegroup = self._describe_nodegroup(cluster, name)
                if nodegroup is None or _desired(nodegroup) == 0:
                    continue
                if nodegroup["status"] != "ACTIVE":
                    raise TransientError(f"Node group {name} is {nodegroup['status'].lower()}.")
                # EKS wants maxSize >= 1; desired and min 0 means no node runs.
                largest = max((nodegroup.get("scalingConfig") or {}).get("maxSize", 1), 1)
                self._call(
                    f"scaling node group {name} to 0",
                    self.eks.update_nodegroup_config,
                    clusterName=cluster,
                    nodegroupName=name,
                    scalingConfig={"minSize": 0, "maxSize": largest, "desiredSize": 0},
                )
                report(f"node group {name} scaled to 0 nodes")

    def start(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        """Scale the node groups back to `node_count` (as `provision` does) and wait."""
        cluster = self.cluster_name(spec)
        if self._describe_cluster(cluster) is None:
            raise PermanentError(f"EKS cluster {cluster} is gone; the workspace cannot start.")
        return self.provision(spec, report)

    def inventory(self) -> list[NodeInfo]:
        enabled = {it.name: it for it in self._enabled_instance_types()}
        nodes: list[NodeInfo] = []
        for cluster in self._clusters():
            for nodegroup in self._own_nodegroups(cluster):
                instance_type = (nodegroup.get("instanceTypes") or [""])[0]
                facts = enabled.get(instance_type) or catalog.instance_type("aws", instance_type)
                model = (facts.gpu_model or "") if facts else ""
                count = facts.gpu_count if facts else 0
                memory = facts.gpu_memory_gb * 1024 if facts else 0
                labels = {
                    **(nodegroup.get("labels") or {}),
                    "eks.amazonaws.com/cluster": cluster,
                    "eks.amazonaws.com/nodegroup": nodegroup["nodegroupName"],
                    "node.kubernetes.io/instance-type": instance_type,
                }
                gpus = tuple(GpuInfo(i, model, memory_mib=memory) for i in range(count))
                for ordinal in range(_desired(nodegroup)):
                    name = f"{cluster}/{nodegroup['nodegroupName']}/{ordinal}"
                    nodes.append(NodeInfo(name=name, gpus=gpus, labels=labels))
        return nodes

    def managed_names(self) -> set[str]:
        """The workspaces with node groups or a dedicated cluster tagged as this entry's."""
        names = set()
        for cluster in self._clusters():
            for nodegroup in self._own_nodegroups(cluster):
                names.add((nodegroup.get("tags") or {}).get(m.WORKSPACE_LABEL))
            tags = (self._describe_cluster(cluster) or {}).get("tags") or {}
            if self._is_own(tags):
                names.add(tags.get(m.WORKSPACE_LABEL))
        return {name for name in names if name}

    def cluster(self, name: str = "") -> dict | None:
        """EKS's description of a cluster (the infrastructure's own by default), or None
        when it does not exist."""
        return self._describe_cluster(name or self.settings.cluster_name)

    # --- steps --------------------------------------------------------------------------

    def cluster_name(self, spec: WorkspaceSpec) -> str:
        """The cluster the workspace's node groups are on: the one they were made on,
        else the one its profile asks for now.

        A workspace's node groups stay where they were made: its profile may have become
        super-sized (or no longer) since, and a stopped workspace starts, and is watched,
        where its nodes are, not on a cluster that was never made for it.
        """
        shared, dedicated = self.settings.cluster_name, self.dedicated_cluster_name(spec)
        wanted, other = (dedicated, shared) if is_dedicated(spec) else (shared, dedicated)
        if self._holds_nodegroups(other, spec) and not self._holds_nodegroups(wanted, spec):
            return other
        return wanted

    def _holds_nodegroups(self, cluster: str, spec: WorkspaceSpec) -> bool:
        if self._describe_cluster(cluster) is None:
            return False
        return bool(self._nodegroup_names_of(cluster, spec))

    def dedicated_cluster_name(self, spec: WorkspaceSpec) -> str:
        return f"{self.settings.cluster_name}-{spec.name}"[:100]

    def _enabled_instance_types(self) -> list:
        if self.infrastructure.pk is None:
            return []
        return list(self.infrastructure.instance_types.all())

    def _plan(self, spec: WorkspaceSpec) -> list[tuple[GroupSpec, str, str]]:
        enabled = self._enabled_instance_types()
        plan = []
        for group in spec.groups:
            instance_type = choose_instance_type(group, enabled)
            if not instance_type:
                gpus = f"{gpus_needed(group)}× {group.gpu_model}" if group.gpu_count else "no GPU"
                raise PermanentError(
                    f"No instance type enabled on {self.infrastructure} fits resource group "
                    f"{group.index} ({gpus}, {group.cpu} vCPU, {group.ram_gb} GB RAM)."
                )
            plan.append((group, nodegroup_name(spec, group), instance_type))
        return plan

    def _tags(self, spec: WorkspaceSpec) -> dict[str, str]:
        return {
            **self._entry_tags(),
            m.WORKSPACE_LABEL: spec.name,
            m.PROFILE_LABEL: spec.profile,
        }

    def _entry_tags(self) -> dict[str, str]:
        return {
            m.MANAGED_BY_LABEL: m.MANAGED_BY,
            INFRASTRUCTURE_TAG: str(self.infrastructure.pk),
        }

    def _is_own(self, tags: dict) -> bool:
        """Whether the tags say this entry made it (another entry may share the cluster)."""
        return all(tags.get(key) == value for key, value in self._entry_tags().items())

    def _create_cluster(self, spec: WorkspaceSpec, cluster: str) -> None:
        s = self.settings
        if not (s.cluster_role_arn and s.subnet_ids):
            raise PermanentError(
                f"EKS cluster {cluster} does not exist, and {self.infrastructure} lacks the "
                "cluster_role_arn and subnet_ids the portal needs to create it."
            )
        tags = self._tags(spec) if is_dedicated(spec) else self._entry_tags()
        params = {
            "name": cluster,
            "roleArn": s.cluster_role_arn,
            "resourcesVpcConfig": {
                "subnetIds": list(s.subnet_ids),
                "securityGroupIds": list(s.security_group_ids),
            },
            "tags": tags,
            "clientRequestToken": request_token(cluster),
        }
        minor = catalog.kubernetes_minor(self.infrastructure.kubernetes_version or "")
        if minor:
            params["version"] = minor
        self._create(f"creating EKS cluster {cluster}", self.eks.create_cluster, **params)

    def _create_nodegroup(self, spec, cluster, group: GroupSpec, name, instance_type) -> None:
        s = self.settings
        if not (s.node_role_arn and s.subnet_ids):
            raise PermanentError(
                f"{self.infrastructure} lacks the node_role_arn and subnet_ids the portal "
                f"needs to create node group {name}."
            )
        size = group.node_count
        params = {
            "clusterName": cluster,
            "nodegroupName": name,
            "scalingConfig": {"minSize": size, "maxSize": size, "desiredSize": size},
            "subnets": list(s.subnet_ids),
            "instanceTypes": [instance_type],
            "amiType": GPU_AMI if group.gpu_count else CPU_AMI,
            "nodeRole": s.node_role_arn,
            "labels": {m.WORKSPACE_LABEL: spec.name, m.GROUP_LABEL: str(group.index)},
            "tags": {**self._tags(spec), m.GROUP_LABEL: str(group.index)},
            "clientRequestToken": request_token(cluster, name),
        }
        if group.gpu_count:
            params["taints"] = [{"key": m.GPU_RESOURCE, "value": "true", "effect": "NO_SCHEDULE"}]
        self._create(f"creating node group {name}", self.eks.create_nodegroup, **params)

    def _observe(self, spec: WorkspaceSpec, cluster: str, report: Reporter) -> ProvisionResult:
        statuses: dict[str, str] = {}
        waiting: list[str] = []
        for group in spec.groups:
            name = nodegroup_name(spec, group)
            nodegroup = self._describe_nodegroup(cluster, name)
            state = nodegroup["status"] if nodegroup else "MISSING"
            statuses[name] = state
            if state in ("CREATE_FAILED", "DEGRADED"):
                issues = (nodegroup.get("health") or {}).get("issues") or []
                text = "; ".join(i.get("message", i.get("code", "")) for i in issues)
                raise PermanentError(f"Node group {name} is {state}.", text)
            if state == "ACTIVE":
                report(f"node group {name} active")
            else:
                waiting.append(f"node group {name} is {state.lower().replace('_', ' ')}")
        region = self.infrastructure.region
        connection = {
            "cluster": cluster,
            "region": region,
            "kubeconfig": f"aws eks update-kubeconfig --name {cluster} --region {region}",
        }
        detail = {"cluster": cluster, "nodegroups": statuses, "waiting": waiting}
        if waiting:
            detail["reason"] = waiting[0]
        return ProvisionResult(ready=not waiting, connection=connection, detail=detail)

    def _cluster_not_active(self, cluster: str, found: dict) -> ProvisionResult:
        state = found["status"]
        if state == "FAILED":
            raise PermanentError(f"EKS cluster {cluster} failed to create.")
        if state == "DELETING":
            raise TransientError(f"EKS cluster {cluster} is still being deleted.")
        reason = f"EKS cluster {cluster} is {state.lower()}"
        return ProvisionResult(False, detail={"cluster": cluster, "reason": reason})

    def _clusters(self) -> list[str]:
        """The infrastructure's cluster and the dedicated clusters named after it."""
        prefix = f"{self.settings.cluster_name}-"
        names: list[str] = []
        token = None
        while True:
            page = self._call(
                "listing EKS clusters",
                self.eks.list_clusters,
                **({"nextToken": token} if token else {}),
            )
            names += [
                n
                for n in page.get("clusters", [])
                if n == self.settings.cluster_name or n.startswith(prefix)
            ]
            token = page.get("nextToken")
            if not token:
                return names

    def _workspace_clusters(self, spec: WorkspaceSpec) -> list[str]:
        """The clusters that may hold the workspace's node groups and exist: the shared
        one and its dedicated one (a profile made super-sized, or no longer, since)."""
        candidates = (self.settings.cluster_name, self.dedicated_cluster_name(spec))
        return [name for name in candidates if self._describe_cluster(name) is not None]

    def _nodegroup_names_of(self, cluster: str, spec: WorkspaceSpec) -> list[str]:
        return [name for name in self._nodegroup_names(cluster) if _is_nodegroup_of(name, spec)]

    def _own_nodegroups(self, cluster: str) -> list[dict]:
        """The node groups on `cluster` tagged as this entry's."""
        found = [self._describe_nodegroup(cluster, n) for n in self._nodegroup_names(cluster)]
        return [n for n in found if n and self._is_own(n.get("tags") or {})]

    def _nodegroup_names(self, cluster: str) -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = self._call(
                f"listing node groups of {cluster}",
                self.eks.list_nodegroups,
                clusterName=cluster,
                **({"nextToken": token} if token else {}),
            )
            names += page.get("nodegroups", [])
            token = page.get("nextToken")
            if not token:
                return names

    # --- boto3 calls --------------------------------------------------------------------

    def _call(self, what: str, method, **params):
        try:
            return method(**params)
        except (ClientError, BotoCoreError) as error:
            raise translate(error, what) from error

    def _describe_cluster(self, name: str) -> dict | None:
        try:
            return self.eks.describe_cluster(name=name)["cluster"]
        except ClientError as error:
            if error.response["Error"].get("Code") == NOT_FOUND:
                return None
            raise translate(error, f"looking up EKS cluster {name}") from error
        except BotoCoreError as error:
            raise translate(error, f"looking up EKS cluster {name}") from error

    def _describe_nodegroup(self, cluster: str, name: str) -> dict | None:
        try:
            return self.eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
        except ClientError as error:
            if error.response["Error"].get("Code") == NOT_FOUND:
                return None
            raise translate(error, f"looking up node group {name}") from error
        except BotoCoreError as error:
            raise translate(error, f"looking up node group {name}") from error

    def _create(self, what: str, method, **params) -> None:
        """Create; "already exists" means a concurrent or earlier attempt made it."""
        try:
            method(**params)
        except ClientError as error:
            if error.response["Error"].get("Code") != "ResourceInUseException":
                raise translate(error, what) from error
        except BotoCoreError as error:
            raise translate(error, what) from error

    def _delete(self, what: str, method, **params) -> None:
        """Delete; "not found" means done, "in use" means a deletion is under way."""
        try:
            method(**params)
        except ClientError as error:
            if error.response["Error"].get("Code") not in (NOT_FOUND, "ResourceInUseException"):
                raise translate(error, what) from error
        except BotoCoreError as error:
            raise translate(error, what) from error


def request_token(*names: str) -> str:
    """A create call's idempotency token: the same for a retry, another for any other
    cluster or node group. EKS takes at most 64 characters, and a cluster name alone may
    have 100, so the names are digested (a SHA-256 in hex is exactly 64)."""
    return hashlib.sha256("/".join(names).encode()).hexdigest()


def _is_nodegroup_of(name: str, spec: WorkspaceSpec) -> bool:
    """`<spec.name>-g<index>`, the names `nodegroup_name` gives."""
    prefix = f"{spec.name}-g"
    return name.startswith(prefix) and name[len(prefix) :].isdigit()


def _desired(nodegroup: dict) -> int:
    return (nodegroup.get("scalingConfig") or {}).get("desiredSize", 0)
