"""The Kubernetes objects of a workspace, as plain dicts (pure functions, no API calls).

One workspace is, per resource group `i` of its compute profile:
- a headless Service `<name>-g<i>` (stable DNS for the group's pods; multi-node groups
  find each other through it),
- a StatefulSet `<name>-g<i>` with one replica per node of the group, each pod requesting
  the group's CPU, memory and `nvidia.com/gpu` (whole GPUs) or `nvidia.com/mig-<profile>`
  (MIG slices, the device plugin's "mixed" strategy), pinned to the GPU model with the
  node selector `nvidia.com/gpu.product` and tolerating the `nvidia.com/gpu` taint,
- one PersistentVolumeClaim `data-<name>-g<i>-<ordinal>` per replica: exactly the name the
  StatefulSet controller gives the claim of its volume claim template "data", so the
  controller adopts the claims we made (visible, labelled, deleted with the workspace)
  instead of making its own,
plus, in the default "namespace" mode, a Namespace named after the workspace and a
ResourceQuota capping it at what the profile asks for. In "shared" mode everything lives in
one shared namespace and is found by its labels; there is no per-workspace quota there
(a ResourceQuota covers a whole namespace), so the portal's own quotas are the limit.

Every object carries `app.kubernetes.io/managed-by=gpu-paas-portal` and
`gpupaas.io/workspace=<spec.name>`; that is how the driver finds (and reaps) them.

The node selector uses the *first* `nvidia.com/gpu.product` value the catalog lists for
the GPU model (e.g. "NVIDIA-A100-SXM4-40GB" for A100-40GB). A node with the other board of
the same model (the PCIe card) does not match; a node affinity "In" over all labels would,
and is the next step if an installation mixes boards.

A group the driver placed (`ManifestOptions.pin_nodes`) also carries a required node
affinity on the Node's name, `matchFields` `metadata.name In [node]`; a group not pinned,
one `metadata.name NotIn [node]` per node of `avoid_nodes` instead (the requirements of
one term are ANDed; a field requirement takes one value). The Node's name,
not its `kubernetes.io/hostname` label: that label is the host's name, which differs from
the Node's where names are FQDNs or the kubelet runs with --hostname-override.

RAM and storage in the profile are "GB"; they are requested in GiB, as Kubernetes
installations conventionally size memory and volumes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from pools import relay
from pools.drivers.base import GroupSpec, WorkspaceSpec
from profiles import catalog
from profiles.mig.catalog import k8s_resource_name

MANAGED_BY = "gpu-paas-portal"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
WORKSPACE_LABEL = "gpupaas.io/workspace"
PROFILE_LABEL = "gpupaas.io/profile"
GROUP_LABEL = "gpupaas.io/group"
GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
NODE_NAME_FIELD = "metadata.name"  # the only field a node affinity's matchFields can use
# The most GPUs one node is believed to have (node labels and allocatable amounts are
# anyone's to write), and the most MIG slices: at most 7 per GPU.
MAX_GPUS_PER_NODE = 64
MAX_SLICES_PER_NODE = 7 * MAX_GPUS_PER_NODE

# What a workspace's (and a service's) container may not do, whatever its image: gain
# privileges (setuid binaries, no_new_privs), make raw sockets (ARP or ICMP spoofing of
# its neighbours on the pod network), device nodes, chroots or audit records, or make
# syscalls the runtime's default seccomp profile refuses. The capabilities root in an
# image needs for its own files and for dropping to a user (apt's _apt) are kept. The
# namespaces enforce Pod Security "baseline" (POD_SECURITY), which these pods pass.
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["NET_RAW", "MKNOD", "SYS_CHROOT", "AUDIT_WRITE", "SETFCAP"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "baseline",
}

NAMESPACE_MODE = "namespace"  # a namespace per workspace (default)
SHARED_MODE = "shared"  # labelled objects in one shared namespace
DATA_VOLUME = "data"
DEFAULT_IMAGE = "nvcr.io/nvidia/cuda:12.6.3-base-ubuntu24.04"
# What a workspace's pods reach outside the cluster (KUBERNETES_WORKSPACE_EGRESS): port 443
# of public addresses, as a local workspace through its proxy (default); any port of them;
# or nothing.
HTTPS_EGRESS, PUBLIC_EGRESS, NO_EGRESS = "https", "public", "off"


@dataclass(frozen=True)
class ManifestOptions:
    """How an installation wants its workspaces laid out on the cluster."""

    namespace_mode: str = NAMESPACE_MODE
    shared_namespace: str = "gpu-workspaces"  # KUBERNETES_SHARED_NAMESPACE's default
    image: str = DEFAULT_IMAGE
    storage_class: str = ""  # "" = the cluster's default StorageClass
    mount_path: str = "/workspace"
    # Nodes no new workspace may land on (drained for repartitioning).
    avoid_nodes: tuple[str, ...] = ()
    # Group index -> the node its pods must run on (chosen by the fleet placement engine).
    pin_nodes: dict[int, str] = field(default_factory=dict)
    egress: str = HTTPS_EGRESS

    def __post_init__(self):
        if self.namespace_mode not in (NAMESPACE_MODE, SHARED_MODE):
            raise ValueError(f"unknown namespace mode: {self.namespace_mode!r}")
        if self.egress not in (HTTPS_EGRESS, PUBLIC_EGRESS, NO_EGRESS):
            raise ValueError(f"unknown egress: {self.egress!r}")


def namespace_for(spec: WorkspaceSpec, options: ManifestOptions) -> str:
    return spec.name if options.namespace_mode == NAMESPACE_MODE else options.shared_namespace


def group_name(spec: WorkspaceSpec, group: GroupSpec) -> str:
    """The StatefulSet and Service of a group; its pods are `<this>-<ordinal>`."""
    return f"{spec.name}-g{group.index}"


def pod_names(spec: WorkspaceSpec) -> list[str]:
    return [name for group in spec.groups for name in group_pod_names(spec, group)]


def group_pod_names(spec: WorkspaceSpec, group: GroupSpec) -> list[str]:
    """Its StatefulSet's pods: `<set>-<ordinal>`."""
    return [f"{group_name(spec, group)}-{ordinal}" for ordinal in range(group.node_count)]


def claim_name(spec: WorkspaceSpec, group: GroupSpec, ordinal: int) -> str:
    return f"{DATA_VOLUME}-{group_name(spec, group)}-{ordinal}"


def label_value(value: str) -> str:
    """A string cut down to what a label value may hold (63 chars, alnum at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63]
    return cleaned.strip("-_.")


def workspace_labels(spec: WorkspaceSpec) -> dict[str, str]:
    """The labels on every object of the workspace (the caller's extra labels first)."""
    labels = dict(spec.labels)
    labels.update(
        {
            MANAGED_BY_LABEL: MANAGED_BY,
            WORKSPACE_LABEL: spec.name,
            PROFILE_LABEL: label_value(spec.profile),
        }
    )
    return labels


def workspace_selector(spec: WorkspaceSpec) -> str:
    """A labelSelector matching every object of the workspace."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{WORKSPACE_LABEL}={spec.name}"


def group_labels(spec: WorkspaceSpec, group: GroupSpec) -> dict[str, str]:
    return {**workspace_labels(spec), GROUP_LABEL: str(group.index)}


def accelerator(group: GroupSpec) -> tuple[str, int] | None:
    """The extended resource one pod of the group requests, or None for CPU only."""
    if not group.gpu_count:
        return None
    if group.mig_profile:
        return k8s_resource_name(group.mig_profile), group.gpu_count
    return GPU_RESOURCE, group.gpu_count


def product_label(gpu_model: str) -> str | None:
    """The `nvidia.com/gpu.product` value to select nodes of a model (the first listed)."""
    model = catalog.gpu_model(gpu_model)
    return model.product_labels[0] if model and model.product_labels else None


def _meta(name: str, labels: dict[str, str], namespace: str | None = None) -> dict:
    meta: dict = {"name": name, "labels": labels}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespace_manifest(spec: WorkspaceSpec, options: ManifestOptions) -> dict:
    if options.namespace_mode == SHARED_MODE:
        # Shared by every workspace: no workspace label, so deleting one never touches it.
        labels = {MANAGED_BY_LABEL: MANAGED_BY}
    else:
        labels = workspace_labels(spec)
    labels = {**labels, **POD_SECURITY}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(namespace_for(spec, options), labels),
    }


def quota_manifest(spec: WorkspaceSpec, options: ManifestOptions) -> dict:
    """The namespace's ceiling: the sum of what every pod and claim of the profile asks."""
    cpu = sum(g.cpu * g.node_count for g in spec.groups)
    ram = sum(g.ram_gb * g.node_count for g in spec.groups)
    storage = sum(g.storage_gb * g.node_count for g in spec.groups)
    claims = sum(g.node_count for g in spec.groups)
    hard = {
        "requests.cpu": str(cpu),
        "limits.cpu": str(cpu),
        "requests.memory": f"{ram}Gi",
        "limits.memory": f"{ram}Gi",
        "requests.storage": f"{storage}Gi",
        "persistentvolumeclaims": str(claims),
        "pods": str(claims),
    }
    # Extended resources can only be capped on requests (they may not be overcommitted).
    for group in spec.groups:
        found = accelerator(group)
        if found:
            resource, count = found
            key = f"requests.{resource}"
            hard[key] = str(int(hard.get(key, "0")) + count * group.node_count)
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(f"{spec.name}-quota", workspace_labels(spec), spec.name),
        "spec": {"hard": hard},
    }


# A container holding GPUs or MIG slices is Ready only while they answer: `nvidia-smi -L`
# (which the NVIDIA container toolkit mounts into GPU containers) exits non-zero when the
# container sees none, or the driver does not answer. An image that asks the toolkit for
# no `utility` capability has no nvidia-smi; there, at least its GPU's device node must be
# there. Checked again every minute, so a GPU that fails later makes the pod, and the
# watched workspace, not Ready.
GPU_CHECK = [
    "sh",
    "-c",
    "if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L; "
    "else ls /dev/nvidia[0-9]* >/dev/null; fi",
]
GPU_CHECK_NAME = "nvidia-smi -L"  # as the pages name it
GPU_READINESS = {
    "exec": {"command": GPU_CHECK},
    "periodSeconds": 60,
    "timeoutSeconds": 20,
    "failureThreshold": 3,
}

# Addresses a workspace may not reach: every IPv4 address that is not public, the very
# list a local workspace's proxy refuses: the private ranges (the cluster's pods and
# services, the portal among them, other workspaces), shared address space used by some
# pod networks, link-local (the cloud's instance metadata service, which hands out node
# credentials), loopback, documentation, multicast and reserved ranges.
NOT_PUBLIC = tuple(str(network) for network in relay.NOT_PUBLIC_IPV4)
# An administrator labels the ingress controller's namespace with this to let users in.
INGRESS_NAMESPACE_LABEL = "gpupaas.io/workspace-ingress"


def network_policy_manifest(spec: WorkspaceSpec, options: ManifestOptions) -> dict:
    """Code in a workspace is untrusted: its pods take traffic only from its own pods and
    from namespaces labelled `gpupaas.io/workspace-ingress=allowed`, and reach only its own
    pods, the cluster's DNS and, as `options.egress` says, port 443 (or any port) of public
    addresses (none of `NOT_PUBLIC`), or none of them; never the portal, another
    workspace or the metadata service. Its own pods: its namespace's, or in shared mode
    those labelled with the workspace (its services stack's too), where the namespace
    holds other workspaces. It needs a CNI that enforces NetworkPolicy (Calico, Cilium,
    the cloud's own); without one it is inert."""
    dns_ports = [{"protocol": protocol, "port": 53} for protocol in ("UDP", "TCP")]
    own_pods: dict = {}
    if options.namespace_mode == SHARED_MODE:
        own_pods = {"matchLabels": {WORKSPACE_LABEL: spec.name}}
    same_workspace = {"podSelector": own_pods}
    egress: list[dict] = [
        {"to": [same_workspace]},
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    }
                }
            ],
            "ports": dns_ports,
        },
    ]
    if options.egress != NO_EGRESS:
        public = {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NOT_PUBLIC)}}
        egress.append({"to": [public]})
        if options.egress == HTTPS_EGRESS:
            egress[-1]["ports"] = [{"protocol": "TCP", "port": 443}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(
            f"{spec.name}-isolation", workspace_labels(spec), namespace_for(spec, options)
        ),
        "spec": {
            "podSelector": own_pods,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        same_workspace,
                        {
                            "namespaceSelector": {
                                "matchLabels": {INGRESS_NAMESPACE_LABEL: "allowed"}
                            }
                        },
                    ]
                }
            ],
            "egress": egress,
        },
    }


def _claim_spec(group: GroupSpec, options: ManifestOptions) -> dict:
    claim: dict = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{group.storage_gb}Gi"}},
    }
    if options.storage_class:
        claim["storageClassName"] = options.storage_class
    return claim


def claim_manifests(spec: WorkspaceSpec, group: GroupSpec, options: ManifestOptions) -> list:
    namespace = namespace_for(spec, options)
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(
                claim_name(spec, group, ordinal), group_labels(spec, group), namespace
            ),
            "spec": _claim_spec(group, options),
        }
        for ordinal in range(group.node_count)
    ]


def service_manifest(spec: WorkspaceSpec, group: GroupSpec, options: ManifestOptions) -> dict:
    labels = group_labels(spec, group)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(group_name(spec, group), labels, namespace_for(spec, options)),
        "spec": {
            "clusterIP": "None",
            "selector": {WORKSPACE_LABEL: spec.name, GROUP_LABEL: str(group.index)},
            # Nodes of a multi-node group must find each other before they are all Ready.
            "publishNotReadyAddresses": True,
        },
    }


def _pod_spec(spec: WorkspaceSpec, group: GroupSpec, options: ManifestOptions) -> dict:
    amounts: dict = {"cpu": str(group.cpu), "memory": f"{group.ram_gb}Gi"}
    found = accelerator(group)
    if found:
        amounts[found[0]] = str(found[1])
    container = {
        "name": "workspace",
        "image": options.image,
        "command": ["sleep", "infinity"],
        # Requests equal to limits: the Guaranteed QoS class, and extended resources
        # (GPUs, MIG slices) must have requests equal to limits anyway.
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "env": [
            {"name": "GPUPAAS_WORKSPACE", "value": spec.name},
            {"name": "GPUPAAS_GROUP", "value": str(group.index)},
            {"name": "GPUPAAS_GROUP_SERVICE", "value": group_name(spec, group)},
        ],
        "volumeMounts": [{"name": DATA_VOLUME, "mountPath": options.mount_path}],
        "securityContext": CONTAINER_SECURITY,
    }
    if found:
        container["readinessProbe"] = GPU_READINESS
    pod: dict = {
        "containers": [container],
        "terminationGracePeriodSeconds": 30,
        # The workspace's code never needs the cluster's API: no service-account token.
        "automountServiceAccountToken": False,
    }
    if found:
        product = product_label(group.gpu_model)
        if product:
            pod["nodeSelector"] = {PRODUCT_LABEL: product}
        pod["tolerations"] = [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoExecute"},
        ]
    pinned = options.pin_nodes.get(group.index)
    if pinned:
        # The pin alone: a group is pinned to a node it may use, and one that keeps its pin
        # to a node drained since (a live group is never moved) must still fit there.
        fields = [{"key": NODE_NAME_FIELD, "operator": "In", "values": [pinned]}]
    else:
        # A field requirement takes exactly one value: one NotIn per node.
        fields = [
            {"key": NODE_NAME_FIELD, "operator": "NotIn", "values": [node]}
            for node in sorted(options.avoid_nodes)
        ]
    if fields:
        # One term: its requirements are ANDed (several terms would be ORed).
        pod["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": fields}]
                }
            }
        }
    return pod


def pinned_node(statefulset: dict) -> str | None:
    """The Node a StatefulSet's pods are pinned to (`metadata.name In [node]`), or None."""
    return pod_pin(((statefulset.get("spec") or {}).get("template") or {}).get("spec") or {})


def pod_pin(pod_spec: dict) -> str | None:
    """The Node a pod spec is pinned to (`metadata.name In [node]`), or None."""
    affinity = pod_spec.get("affinity") or {}
    required = (affinity.get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for requirement in term.get("matchFields") or []:
            values = requirement.get("values") or []
            if (
                requirement.get("key") == NODE_NAME_FIELD
                and requirement.get("operator") == "In"
                and len(values) == 1
            ):
                return values[0]
    return None


def statefulset_manifest(spec: WorkspaceSpec, group: GroupSpec, options: ManifestOptions) -> dict:
    labels = group_labels(spec, group)
    name = group_name(spec, group)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, labels, namespace_for(spec, options)),
        "spec": {
            "replicas": group.node_count,
            "serviceName": name,
            "podManagementPolicy": "Parallel",  # all nodes of a group start together
            "selector": {
                "matchLabels": {WORKSPACE_LABEL: spec.name, GROUP_LABEL: str(group.index)}
            },
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(spec, group, options)},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": DATA_VOLUME, "labels": labels},
                    "spec": _claim_spec(group, options),
                }
            ],
        },
    }


def render(spec: WorkspaceSpec, options: ManifestOptions | None = None) -> list[dict]:
    """Every object of the workspace, in the order to apply them (namespace first)."""
    options = options or ManifestOptions()
    objects = [namespace_manifest(spec, options)]
    if options.namespace_mode == NAMESPACE_MODE:
        objects.append(quota_manifest(spec, options))
    objects.append(network_policy_manifest(spec, options))  # before any pod exists
    for group in spec.groups:
        objects.extend(claim_manifests(spec, group, options))
        objects.append(service_manifest(spec, group, options))
        objects.append(statefulset_manifest(spec, group, options))
    return objects


# --- the quota with a services stack on top (used by services.backends.kubernetes) ----------------

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {
    None: 1,
    "m": Fraction(1, 1000),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_BYTES = ("memory", "storage")


def parse_quantity(value) -> Fraction:
    """A Kubernetes quantity ("2", "500m", "8Gi") as an exact number."""
    found = _QUANTITY.match(str(value).strip())
    if not found:
        raise ValueError(f"not a quantity this portal writes: {value!r}")
    return Fraction(found[1]) * _FACTORS[found[2]]


def count(value) -> int:
    """A whole count from a label or an allocatable amount ("8"); 0 when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def format_quantity(key: str, amount: Fraction) -> str:
    if key.endswith(_BYTES):
        return f"{amount / 2**30}Gi" if amount % 2**30 == 0 else str(int(amount))
    if amount.denominator == 1:
        return str(amount.numerator)
    return f"{int(amount * 1000)}m"


def pod_quota_usage(pod_spec: dict, replicas: int = 1) -> dict[str, Fraction]:
    """What `replicas` pods of this spec count against a ResourceQuota's keys."""
    usage: dict[str, Fraction] = {"pods": Fraction(replicas)}
    for container in pod_spec.get("containers", []):
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = {**limits, **(resources.get("requests") or {})}  # requests default to limits
        for kind, amounts in (("requests", requests), ("limits", limits)):
            for resource, value in amounts.items():
                if kind == "limits" and resource not in ("cpu", "memory"):
                    continue  # extended resources are quota'd on requests only
                key = f"{kind}.{resource}"
                usage[key] = usage.get(key, Fraction(0)) + parse_quantity(value) * replicas
    return usage


def quota_with(spec: WorkspaceSpec, options: ManifestOptions, extra: dict) -> dict:
    """`quota_manifest` raised by `extra` ({"requests.cpu": 2, "pods": 1, ...})."""
    quota = quota_manifest(spec, options)
    hard = quota["spec"]["hard"]
    for key, amount in extra.items():
        if amount:
            total = parse_quantity(hard.get(key, "0")) + Fraction(amount)
            hard[key] = format_quantity(key, total)
    return quota
