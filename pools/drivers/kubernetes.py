"""The Kubernetes driver: workspaces on an existing cluster reached through a kubeconfig.

A workspace is the objects `k8s_manifests.render` describes, applied with server-side
apply (fieldManager "gpu-paas-portal", force) through the portal's one Kubernetes client,
`pools.kube`. Applying is idempotent by nature: a retried task re-applies the same objects
under the same names and changes nothing.

Readiness comes from the pods: all pods Ready is ready. While a pod waits, `detail["reason"]`
says why in words (e.g. "pod ws-42-g0-0 cannot be scheduled yet: 0/3 nodes are available:
3 Insufficient nvidia.com/gpu."). Unschedulable is not an error: capacity may appear (an
autoscaler, a workspace released), so the task keeps polling within its time bound.

Image pulls: Kubernetes itself retries ErrImagePull/ImagePullBackOff, and a registry outage
or rate limit heals on its own, so for `IMAGE_PULL_GRACE` after the pod started this is
"still pending" with the reason; after that it is a PermanentError (a wrong image name or
missing pull secret does not fix itself). InvalidImageName and ErrImageNeverPull are
permanent at once.

Placement: before a new workspace's StatefulSets are applied, each GPU group that runs on
one node is placed with the fleet placement engine (`profiles.mig.placement.place`) on a
fleet built from the nodes' allocatable `nvidia.com/gpu` / `nvidia.com/mig-<profile>`
counts less what live pods request there (`pools.fleet.build_fleet`; nodes drained for
repartitioning are left out), and pinned to its node with a required node affinity on the
Node's name (`k8s_manifests`). No room now → TransientError; no room even on an idle
cluster → PermanentError. A re-apply (the StatefulSets exist) keeps the recorded pins and
places nothing; a start places again a group whose node is gone, drained or full. Groups
spanning several nodes are not pinned, and a cluster reporting no GPU nodes at all is left
to the scheduler, as before. Listing every pod needs cluster-wide `list pods` (namespace
mode already needs cluster-wide rights for namespaces).

A node whose GPU numbers cannot be believed (more than `k8s_manifests.MAX_GPUS_PER_NODE`
GPUs in its `nvidia.com/gpu.count` label or its allocatable amounts; anyone who may label
or update nodes writes them) is listed by `inventory` without GPUs, with the reason in its
`problem`, and is never placed on.

Stop and start work on the StatefulSets as they are on the cluster, not as the profile,
which may have been edited since, would render them: stop scales every set labelled with
the workspace to 0 through the scale subresource (nothing else of the set changes), and
start applies the profile's sets again with the volume claim templates they have
(Kubernetes refuses any change to those; a volume keeps the size it was made with).
Repair applies the same way, places an unwell group again where its node is gone, drained
or full, and deletes the pods a StatefulSet does not replace by itself (`repair`).

Errors are `pools.kube`'s one mapping: 401/403 → PermanentError (the credentials were
refused, with the reason); 404 → absent; 400/415/422 → PermanentError with the API's
message; 409, 429, 5xx, timeouts and connection failures → TransientError.

Settings (optional, read from django.conf.settings): KUBERNETES_NAMESPACE_MODE
("namespace" or "shared"), KUBERNETES_SHARED_NAMESPACE, KUBERNETES_WORKSPACE_IMAGE,
KUBERNETES_STORAGE_CLASS, KUBERNETES_WORKSPACE_EGRESS ("https", "public" or "off").
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.conf import settings

from pools import fleet, kube
from pools.drivers import k8s_manifests as m
from pools.drivers.base import (
    Driver,
    GpuInfo,
    NodeInfo,
    PermanentError,
    ProvisionResult,
    Reporter,
    TransientError,
    WorkspaceSpec,
    ignore_progress,
)
from pools.partitions import draining_nodes
from profiles.catalog import gpu_model_for_product_label
from profiles.mig import placement

IMAGE_PULL_GRACE = timedelta(minutes=10)
# A pod not Ready whose containers have run longer than this is made again by a repair:
# its readiness check's window (the GPU check: every minute, 3 failures in a row before the
# pod is not Ready), so a pod the repair just made is not deleted again before it could pass.
STUCK_POD_GRACE = timedelta(
    seconds=m.GPU_READINESS["periodSeconds"] * m.GPU_READINESS["failureThreshold"]
)
IMAGE_PULL_WAITING = {"ErrImagePull", "ImagePullBackOff"}
IMAGE_NEVER_PULLS = {"InvalidImageName", "ErrImageNeverPull"}
GPU_COUNT_LABEL = "nvidia.com/gpu.count"  # GPU Feature Discovery's
# What shared mode deletes, by label, to remove a workspace (pods go with their set).
SHARED_MODE_KINDS = ("StatefulSet", "Service", "PersistentVolumeClaim", "NetworkPolicy")
# Its fence goes last, once no pod of it is left to fence.
FENCE = "NetworkPolicy"


def options_from_settings() -> m.ManifestOptions:
    defaults = m.ManifestOptions()
    return m.ManifestOptions(
        namespace_mode=getattr(settings, "KUBERNETES_NAMESPACE_MODE", defaults.namespace_mode),
        shared_namespace=getattr(
            settings, "KUBERNETES_SHARED_NAMESPACE", defaults.shared_namespace
        ),
        image=getattr(settings, "KUBERNETES_WORKSPACE_IMAGE", defaults.image),
        storage_class=getattr(settings, "KUBERNETES_STORAGE_CLASS", defaults.storage_class),
        egress=getattr(settings, "KUBERNETES_WORKSPACE_EGRESS", defaults.egress),
    )


@dataclass(frozen=True)
class KubeNodeInfo(NodeInfo):
    """A node, plus what the device plugin says is allocatable ("nvidia.com/gpu": 8, ...),
    why its GPUs are left out, when they are, and why it takes no new pods now, when it
    does not ("" otherwise)."""

    allocatable: dict[str, int] = field(default_factory=dict)
    problem: str = ""
    out_of_service: str = ""


class KubernetesDriver(Driver):
    def __init__(self, infrastructure, options: m.ManifestOptions | None = None):
        super().__init__(infrastructure)
        self.options = options or options_from_settings()
        self._kube: kube.KubeClient | None = None

    @property
    def kube(self) -> kube.KubeClient:
        """The cluster's client, loaded on first use (PermanentError without credentials)."""
        if self._kube is None:
            self._kube = kube.client_for(self.infrastructure)
        return self._kube

    # --- the interface ------------------------------------------------------------------

    def provision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        namespace = m.namespace_for(spec, self.options)
        if self.options.namespace_mode == m.NAMESPACE_MODE:
            self._check_namespace_is_ours(spec, namespace)
        # Nodes drained for repartitioning take no new workspaces.
        avoid = draining_nodes(self.infrastructure)
        pins = self._pin_groups(spec, namespace, avoid, report)
        options = replace(self.options, avoid_nodes=avoid, pin_nodes=pins)
        for obj in self._rendered(spec, options):
            if self.kube.apply(obj):
                report(f"{kube.kind(obj['kind']).words} {obj['metadata']['name']} created")
        return self._observe(spec, report)

    def _rendered(self, spec: WorkspaceSpec, options: m.ManifestOptions) -> list[dict]:
        """The workspace's objects to apply (`k8s_manifests.render`), less a shared
        namespace that exists: made by an administrator, or before. Applying it again
        would overwrite their labels, a stricter Pod Security level among them."""
        objects = m.render(spec, options)
        if options.namespace_mode == m.SHARED_MODE and self.kube.get(
            "Namespace", options.shared_namespace
        ):
            return [obj for obj in objects if obj["kind"] != "Namespace"]
        return objects

    def status(self, spec: WorkspaceSpec) -> ProvisionResult:
        return self._observe(spec, ignore_progress)

    def deprovision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        namespace = m.namespace_for(spec, self.options)
        if self.options.namespace_mode == m.SHARED_MODE:
            self._delete_labelled(spec, namespace, report)
            return
        found = self.kube.get("Namespace", namespace)
        if found is None:
            return
        if not _belongs_to(found, spec):
            raise PermanentError(
                f"Namespace {namespace} exists but is not this workspace's; it was left alone."
            )
        if not found["metadata"].get("deletionTimestamp"):
            self.kube.delete("Namespace", namespace)
            report(f"namespace {namespace} deletion started")
        if self.kube.get("Namespace", namespace) is not None:
            # The task retries until the namespace, its pods and its volumes are gone.
            raise TransientError(f"Namespace {namespace} is still being deleted.")
        report(f"namespace {namespace} deleted")

    def stop(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Scale every StatefulSet of the workspace to 0 replicas; its volumes stay.

        The sets are found by the workspace's labels, not rendered from its profile: one
        the edited profile no longer lists holds GPUs too. Only their replicas change (the
        scale subresource), so each keeps its pin and its claim templates for `start`.
        Done when no pod is left.
        """
        namespace = m.namespace_for(spec, self.options)
        for found in self.kube.list("StatefulSet", namespace, m.workspace_selector(spec)):
            name = found["metadata"]["name"]
            if (found.get("spec") or {}).get("replicas") == 0:
                continue  # stopped before (a retry)
            self.kube.request(
                "PATCH",
                f"{kube.object_path('StatefulSet', name, namespace)}/scale",
                body={"spec": {"replicas": 0}},
                content_type="application/merge-patch+json",
                what=f"StatefulSet {name}",
            )
            report(f"stateful set {name} scaled to 0")
        if self.kube.list("Pod", namespace, m.workspace_selector(spec)):
            raise TransientError(f"The pods of {spec.name} are still terminating.")
        report("all pods stopped; volumes kept")

    def start(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        """Apply the profile's StatefulSets again with `node_count` replicas, each on its
        recorded node unless that is gone, drained or full; wait like provision.

        Every group of the profile needs the set it was made with: a group the profile
        gained after the workspace was made has no volume, so the start fails, saying so.
        The sets keep their volume claim templates (Kubernetes refuses any change to them)
        and the claims are not applied again: a volume keeps the size it was made with.
        """
        namespace = m.namespace_for(spec, self.options)
        if self.options.namespace_mode == m.NAMESPACE_MODE:
            self._check_namespace_is_ours(spec, namespace)
        existing = self._existing_sets(spec, namespace)
        for group in spec.groups:
            name = m.group_name(spec, group)
            if name not in existing:
                raise PermanentError(
                    f"StatefulSet {name} of {spec.name} is gone from namespace {namespace}: "
                    f"group {group.index} was added to the profile after the workspace was "
                    "made, or the set was deleted; the workspace cannot be started."
                )
        self._apply_again(spec, namespace, existing, {g.index for g in spec.groups}, report)
        report("stateful sets scaled up")
        return self._observe(spec, report)

    def repair(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Bring back what `check` found wrong, keeping the workspace's volumes.

        Objects that are gone are made again (a set deleted takes up its claims again,
        which outlive it). A group with a pod that is missing or not Ready is placed again
        when its node is gone, drained or full, as `start` does; a healthy group is never
        moved, and its set is not applied again. Then a pod its StatefulSet will not
        replace by itself is deleted, so the set makes it again (`_stuck`): one whose node
        is gone, one running but failing its readiness check (its GPU check, say; not
        Ready after running longer than `STUCK_POD_GRACE`), and one made for a node its set
        no longer pins. A pod on a node that is not ready is left: deleting it cannot
        finish until the node answers, and a set never runs a pod twice.
        """
        namespace = m.namespace_for(spec, self.options)
        if self.options.namespace_mode == m.NAMESPACE_MODE:
            self._check_namespace_is_ours(spec, namespace)
        pods = {
            pod["metadata"]["name"]: pod
            for pod in self.kube.list("Pod", namespace, m.workspace_selector(spec))
        }
        # A pod whose Node is gone may still read Ready: nothing updates it any more.
        nodes = {(pod.get("spec") or {}).get("nodeName") for pod in pods.values()} - {None}
        found = {node: self.kube.get("Node", node) for node in nodes}
        gone = {node for node, obj in found.items() if obj is None}
        silent = {node for node, obj in found.items() if obj is not None and not node_ready(obj)}
        unwell = {
            group.index
            for group in spec.groups
            for pod in [pods.get(name) for name in m.group_pod_names(spec, group)]
            if not _ready(pod) or (pod.get("spec") or {}).get("nodeName") in gone
        }
        existing = self._existing_sets(spec, namespace)
        sets = self._apply_again(spec, namespace, existing, unwell, report)
        sets |= {name: found for name, found in existing.items() if name not in sets}
        for name in m.pod_names(spec):  # a services stack's pods are its own to repair
            on_silent_node = name in pods and pods[name]["spec"].get("nodeName") in silent
            why = name in pods and not on_silent_node and _stuck(pods[name], sets, gone)
            if why and self.kube.delete("Pod", name, namespace):
                report(f"pod {name} deleted ({why}); its stateful set makes it again")

    def _existing_sets(self, spec: WorkspaceSpec, namespace: str) -> dict[str, dict]:
        """{name: StatefulSet} of the profile's groups whose set exists."""
        found = {}
        for group in spec.groups:
            name = m.group_name(spec, group)
            statefulset = self.kube.get("StatefulSet", name, namespace)
            if statefulset is not None:
                found[name] = statefulset
        return found

    def _apply_again(
        self,
        spec: WorkspaceSpec,
        namespace: str,
        existing: dict[str, dict],
        recheck: set[int],
        report: Reporter,
    ) -> dict[str, dict]:
        """Apply the workspace's objects over what exists; {name: StatefulSet applied}.

        A set that exists is applied again only for a group in `recheck`, and keeps its
        volume claim templates; existing claims are not applied again (Kubernetes refuses
        changes to the one, and a volume keeps the size it was made with). The others'
        sets stay as they are: a new template (the nodes drained now, say) would make
        their controller replace healthy pods. The pins of the `recheck` groups are
        checked (`_pin_groups`).
        """
        kept = {m.group_name(spec, g) for g in spec.groups if g.index not in recheck}
        avoid = draining_nodes(self.infrastructure)
        pins = self._pin_groups(spec, namespace, avoid, report, recheck=recheck)
        options = replace(self.options, avoid_nodes=avoid, pin_nodes=pins)
        applied = {}
        for obj in self._rendered(spec, options):
            name = obj["metadata"]["name"]
            if obj["kind"] == "PersistentVolumeClaim" and self.kube.get(
                "PersistentVolumeClaim", name, namespace
            ):
                continue
            if obj["kind"] == "StatefulSet":
                if name in existing and name in kept:
                    continue
                if name in existing:
                    templates = existing[name]["spec"]["volumeClaimTemplates"]
                    obj["spec"]["volumeClaimTemplates"] = templates
                applied[name] = obj
            if self.kube.apply(obj):
                report(f"{kube.kind(obj['kind']).words} {name} created")
        return applied

    def check(self, spec: WorkspaceSpec) -> list[str]:
        """Every pod of the workspace is there and Ready, and each runs on a node that is
        still there and Ready."""
        try:
            observed = self._observe(spec, ignore_progress)
        except PermanentError as error:  # e.g. its image can no longer be pulled
            return [str(error)]
        problems = list(observed.detail["waiting"])
        for pod, name in sorted(observed.detail["nodes"].items()):
            node = self.kube.get("Node", name)
            if node is None:
                problems.append(f"Node {name} of pod {pod} is gone.")
            elif not node_ready(node):
                problems.append(f"Node {name} of pod {pod} is not ready.")
        return problems

    def inventory(self) -> list[NodeInfo]:
        return [node_info(node) for node in self.kube.list("Node")]

    def managed_names(self) -> set[str]:
        selector = f"{m.MANAGED_BY_LABEL}={m.MANAGED_BY}"
        if self.options.namespace_mode == m.NAMESPACE_MODE:
            found = self.kube.list("Namespace", "", selector)
        else:
            namespace = self.options.shared_namespace
            found = [
                o for kind in SHARED_MODE_KINDS for o in self.kube.list(kind, namespace, selector)
            ]
        names = {(o["metadata"].get("labels") or {}).get(m.WORKSPACE_LABEL) for o in found}
        return {name for name in names if name}

    # --- steps --------------------------------------------------------------------------

    def _check_namespace_is_ours(self, spec: WorkspaceSpec, namespace: str) -> None:
        found = self.kube.get("Namespace", namespace)
        if found is None:
            return
        if not _belongs_to(found, spec):
            raise PermanentError(
                f"Namespace {namespace} already exists on the cluster and is not this "
                "workspace's; the portal will not take it over."
            )
        if found["metadata"].get("deletionTimestamp"):
            raise TransientError(f"Namespace {namespace} is still being deleted.")

    def _recorded_pins(self, spec: WorkspaceSpec, namespace: str) -> tuple[set[int], dict]:
        """(groups whose StatefulSet exists, {group index: node} pinned in those sets)."""
        existing, pins = set(), {}
        for group in spec.groups:
            found = self.kube.get("StatefulSet", m.group_name(spec, group), namespace)
            if found is None:
                continue
            existing.add(group.index)
            node = m.pinned_node(found)
            if node:
                pins[group.index] = node
        return existing, pins

    def _pin_groups(
        self,
        spec: WorkspaceSpec,
        namespace: str,
        avoid: tuple[str, ...],
        report: Reporter,
        *,
        recheck: Collection[int] = (),
    ) -> dict[int, str]:
        """The node each GPU group's pods are pinned to, placed with the fleet engine.

        A group whose StatefulSet exists keeps the pin recorded in it (or none): a re-apply
        never moves a workspace. For the groups in `recheck` (all at a start, the unwell
        ones at a repair), a recorded pin to a node that is gone, drained or without room
        for the group now is dropped and the group placed again: a stopped workspace's
        node may have been replaced or taken meanwhile. The
        others are placed on a fleet built from the cluster (`fleet.build_fleet`). A group
        spanning several nodes is not pinned: the engine places a group on one host, and one
        StatefulSet template cannot pin each replica to its own node, so the scheduler
        spreads those replicas as before.
        """
        existing, pins = self._recorded_pins(spec, namespace)
        nodes: list[NodeInfo] | None = None
        pods: list[dict] | None = None
        if pins.keys() & set(recheck):
            nodes = [n for n in self.inventory() if fleet.is_gpu_node(n)]
            pods = self.kube.list("Pod")
            for group in spec.groups:
                node = group.index in recheck and pins.get(group.index)
                problem = node and _pin_problem(spec, group, node, nodes, pods, avoid)
                if problem:
                    report(f"group {group.index} is placed again: node {node} {problem}")
                    del pins[group.index]
                    existing.discard(group.index)
        for index, node in sorted(pins.items()):
            report(f"group {index} stays pinned to node {node}")
        todo = []
        for group in spec.groups:
            if group.index in existing or not m.accelerator(group):
                continue  # applied before, or CPU only (not placed)
            if group.node_count > 1:
                report(
                    f"group {group.index} spans {group.node_count} nodes; not pinned, "
                    "the scheduler places its pods"
                )
                continue
            todo.append(group)
        if not todo:
            return pins
        if nodes is None:
            nodes = [n for n in self.inventory() if fleet.is_gpu_node(n)]
        if not nodes:
            report("the cluster reports no GPU nodes; the scheduler places the workspace")
            return pins
        if pods is None:
            pods = self.kube.list("Pod")
        request = _request(spec, todo)
        # A node that is not Ready or is cordoned still reports its allocatable GPUs, but a
        # pod pinned there would not run.
        taking = [n for n in nodes if n.name not in avoid and not n.out_of_service]
        chosen = placement.place(fleet.build_fleet(taking, pods), request)
        if chosen is None:
            wanted = ", ".join(_describe(g) for g in todo)
            if placement.place(fleet.build_fleet(nodes, []), request) is None:
                raise PermanentError(
                    f"No node of the cluster can hold {wanted} even when idle; "
                    f"{spec.name} cannot be placed."
                )
            resting = ", ".join(f"{n.name} {n.out_of_service}" for n in nodes if n.out_of_service)
            raise TransientError(
                f"no node has room for {wanted} now"
                + (f" (taking no new pods: {resting})." if resting else ".")
            )
        for group, node in zip(todo, fleet.hosts_by_group(todo, chosen), strict=True):
            pins[group.index] = node
            report(f"group {group.index} placed on node {node}")
        return pins

    def _observe(self, spec: WorkspaceSpec, report: Reporter) -> ProvisionResult:
        """Where the workspace's pods stand; reports which node each pod landed on."""
        namespace = m.namespace_for(spec, self.options)
        pods = {
            pod["metadata"]["name"]: pod
            for pod in self.kube.list("Pod", namespace, m.workspace_selector(spec))
        }
        expected = m.pod_names(spec)
        waiting: list[str] = []
        nodes: dict[str, str] = {}
        for name in expected:
            pod = pods.get(name)
            if pod is None:
                waiting.append(f"pod {name} is not created yet")
                continue
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                nodes[name] = node
                report(f"pod {name} scheduled on node {node}")
            reason = waiting_reason(name, pod)
            if reason:
                waiting.append(reason)
        ready = bool(expected) and not waiting
        services = [f"{m.group_name(spec, g)}.{namespace}.svc" for g in spec.groups]
        connection = {"namespace": namespace, "pods": expected, "services": services}
        if expected:
            connection["shell"] = f"kubectl -n {namespace} exec -it {expected[0]} -- bash"
        detail = {"namespace": namespace, "nodes": nodes, "waiting": waiting}
        if waiting:
            detail["reason"] = waiting[0]
        return ProvisionResult(ready=ready, connection=connection, detail=detail)

    def _delete_labelled(self, spec: WorkspaceSpec, namespace: str, report: Reporter) -> None:
        selector = m.workspace_selector(spec)
        for kind in SHARED_MODE_KINDS:
            if kind == FENCE and self.kube.list("Pod", namespace, selector):
                raise TransientError(f"The pods of {spec.name} are still terminating.")
            for obj in self.kube.list(kind, namespace, selector):
                name = obj["metadata"]["name"]
                if self.kube.delete(kind, name, namespace):
                    report(f"{kube.kind(kind).words} {name} deleted")


def node_info(node: dict) -> KubeNodeInfo:
    """What `inventory` lists of one Node object."""
    name = node["metadata"]["name"]
    labels = node["metadata"].get("labels") or {}
    out_of_service = _out_of_service(node)
    allocatable = {
        key: m.count(value)
        for key, value in (node.get("status", {}).get("allocatable") or {}).items()
        if key == m.GPU_RESOURCE or key.startswith("nvidia.com/mig-")
    }
    problem = _implausible(labels, allocatable)
    if problem:
        return KubeNodeInfo(
            name=name,
            labels=dict(labels),
            problem=f"Node {name} {problem}; its GPUs are left out.",
            out_of_service=out_of_service,
        )
    product = labels.get(m.PRODUCT_LABEL, "")
    model = gpu_model_for_product_label(product) if product else None
    count = m.count(labels.get(GPU_COUNT_LABEL)) or allocatable.get(m.GPU_RESOURCE, 0)
    mig = "-MIG-" in product.upper() or any(k != m.GPU_RESOURCE for k in allocatable)
    gpus = tuple(
        GpuInfo(
            index=index,
            gpu_model=model.code if model else "",
            memory_mib=m.count(labels.get("nvidia.com/gpu.memory")),
            mig_enabled=mig,
        )
        for index in range(count)
    )
    return KubeNodeInfo(
        name=name,
        gpus=gpus,
        labels=dict(labels),
        allocatable=allocatable,
        out_of_service=out_of_service,
    )


def _out_of_service(node: dict) -> str:
    """Why a node takes no new pods ("" when it does): its kubelet does not report Ready
    (the node controller marks a silent one Unknown), or it is cordoned."""
    if not node_ready(node):
        ready = next(c for c in node["status"]["conditions"] if c.get("type") == "Ready")
        return f"not Ready ({ready.get('reason') or ready.get('status')})"
    if (node.get("spec") or {}).get("unschedulable"):
        return "cordoned"
    return ""


def _implausible(labels: dict, allocatable: dict[str, int]) -> str:
    """Why a node's GPU numbers cannot be believed ("" when they can): a GPU per unit of
    them is built, so a huge label would exhaust the worker's memory."""
    stated = m.count(labels.get(GPU_COUNT_LABEL))
    if stated > m.MAX_GPUS_PER_NODE:
        return (
            f"says it has {stated} GPUs ({GPU_COUNT_LABEL}), more than the "
            f"{m.MAX_GPUS_PER_NODE} one node is believed to hold"
        )
    for key, amount in sorted(allocatable.items()):
        most = m.MAX_GPUS_PER_NODE if key == m.GPU_RESOURCE else m.MAX_SLICES_PER_NODE
        if amount > most:
            return f"offers {amount} {key}, more than the {most} one node is believed to hold"
    return ""


def _request(spec: WorkspaceSpec, groups) -> placement.Request:
    return placement.Request(
        f"workspace:{spec.name}",
        tuple(
            placement.ResourceGroup(
                count=g.gpu_count, gpu_model=g.gpu_model or None, profile=g.mig_profile or None
            )
            for g in groups
        ),
    )


def _pin_problem(spec: WorkspaceSpec, group, node: str, nodes, pods, avoid) -> str:
    """Why a group cannot go back to the node it is pinned to ("" when it can)."""
    found = [n for n in nodes if n.name == node]
    if not found:
        return "is gone or offers no GPUs"
    if node in avoid:
        return "is drained for repartitioning"
    # The group's own pods (pending after an earlier try of this start) hold nothing.
    others = [p for p in pods if not _of_group(p, spec, group)]
    if placement.place(fleet.build_fleet(found, others), _request(spec, [group])) is None:
        return "has no room for it now"
    return ""


def _of_group(pod: dict, spec: WorkspaceSpec, group) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return (
        labels.get(m.MANAGED_BY_LABEL) == m.MANAGED_BY
        and labels.get(m.WORKSPACE_LABEL) == spec.name
        and labels.get(m.GROUP_LABEL) == str(group.index)
    )


def _describe(group) -> str:
    what = f"MIG {group.mig_profile} slice" if group.mig_profile else "GPU"
    model = f" {group.gpu_model}" if group.gpu_model else ""
    return f"group {group.index} ({group.gpu_count}×{model} {what})"


def _belongs_to(namespace: dict, spec: WorkspaceSpec) -> bool:
    labels = namespace["metadata"].get("labels") or {}
    return (
        labels.get(m.MANAGED_BY_LABEL) == m.MANAGED_BY
        and labels.get(m.WORKSPACE_LABEL) == spec.name
    )


def node_ready(node: dict) -> bool:
    """Whether the node's kubelet reports Ready (a node that reports no Ready condition at
    all is taken at its word that it is there)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    return ready is None or ready.get("status") == "True"


def waiting_reason(name: str, pod: dict) -> str:
    """Why a pod is not Ready yet ("" when it is); raises when waiting cannot help."""
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    if conditions.get("Ready", {}).get("status") == "True":
        return ""
    scheduled = conditions.get("PodScheduled", {})
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return f"pod {name} cannot be scheduled yet: {scheduled.get('message', '')}".strip()
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason, message = waiting.get("reason", ""), waiting.get("message", "")
        if reason in IMAGE_NEVER_PULLS:
            raise PermanentError(f"Pod {name} cannot start its image: {reason}.", message)
        if reason in IMAGE_PULL_WAITING:
            started = _parse_time(
                status.get("startTime") or pod["metadata"].get("creationTimestamp")
            )
            if started and datetime.now(UTC) - started > IMAGE_PULL_GRACE:
                raise PermanentError(
                    f"Pod {name} could not pull its image for {IMAGE_PULL_GRACE}: {reason}.",
                    message,
                )
            return f"pod {name} is pulling its image ({reason}: {message})"
        if reason:
            return f"pod {name} is waiting: {reason}"
        running = "running" in (container.get("state") or {})
        if running and not container.get("ready") and _checks_gpus(pod, container.get("name")):
            return f"pod {name} runs, but its GPU check ({m.GPU_CHECK_NAME}) has not passed"
    return f"pod {name} is {status.get('phase', 'Pending').lower()}, not ready yet"


def _stuck(pod: dict, sets: dict[str, dict], gone_nodes: set[str]) -> str:
    """Why its StatefulSet (in `sets`, by name) will not replace this pod by itself (""
    when it will, or when the pod is well)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    node = spec.get("nodeName")
    if node in gone_nodes:
        return f"its node {node} is gone"
    owner = sets.get(pod["metadata"]["name"].rpartition("-")[0])
    pin, made_for = owner and m.pinned_node(owner), m.pod_pin(spec)
    if not node and pin and made_for not in (None, pin):
        return f"made for node {made_for}, its set now pins {pin}"
    running = _running_unready_since(status)
    if running and datetime.now(UTC) - running > STUCK_POD_GRACE:
        return "running, but failing its readiness check"
    return ""


def _ready(pod: dict | None) -> bool:
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _running_unready_since(status: dict) -> datetime | None:
    """Since when a pod that is not Ready has run its containers that are not ready (None
    when it is Ready, or not running). Not Ready after running longer than its readiness
    check's window means the check failed that many times in a row: on a pod that was
    Ready for hours it does at once, and a pod made a moment ago has its window."""
    if status.get("phase") != "Running" or _ready({"status": status}):
        return None
    started = [
        _parse_time(((c.get("state") or {}).get("running") or {}).get("startedAt"))
        for c in status.get("containerStatuses") or []
        if not c.get("ready")
    ]
    started = [time for time in started if time]
    return min(started) if started else None


def _checks_gpus(pod: dict, container_name: str | None) -> bool:
    """Whether that container's readiness probe is the GPU check (by its command: the API
    server returns the probe with its defaults filled in)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == container_name:
            probe = container.get("readinessProbe") or {}
            return (probe.get("exec") or {}).get("command") == m.GPU_CHECK
    return False


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
