"""The Kubernetes driver: workspaces on an existing cluster reached through a kubeconfig.

A workspace is the objects `k8s_manifests.render` describes, applied with server-side
apply (PATCH, `application/apply-patch+yaml`, fieldManager "gpu-paas-portal", force) through
the official `kubernetes` client's ApiClient. Applying is idempotent by nature: a retried
task re-applies the same objects under the same names and changes nothing.

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
counts less what live pods request there (`build_fleet`; nodes drained for repartitioning
are left out), and pinned to its node with a required node affinity
`kubernetes.io/hostname In [node]`. No room now → TransientError; no room even on an idle
cluster → PermanentError. A re-apply (the StatefulSets exist) keeps the recorded pins and
places nothing. Groups spanning several nodes are not pinned, and a cluster reporting no
GPU nodes at all is left to the scheduler, as before. Listing every pod needs cluster-wide
`list pods` (namespace mode already needs cluster-wide rights for namespaces).

Errors: 401/403 → PermanentError (the kubeconfig's credentials were refused); 400/415/422
→ PermanentError with the API's message; 409, 429, 5xx and connection failures →
TransientError.

Settings (optional, read from django.conf.settings): KUBERNETES_NAMESPACE_MODE
("namespace" or "shared"), KUBERNETES_SHARED_NAMESPACE, KUBERNETES_WORKSPACE_IMAGE,
KUBERNETES_STORAGE_CLASS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import urllib3
import yaml
from django.conf import settings
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config_dict
from kubernetes.config.config_exception import ConfigException

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
from profiles.mig import catalog as mig_catalog
from profiles.mig import layout, placement

FIELD_MANAGER = "gpu-paas-portal"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
IMAGE_PULL_GRACE = timedelta(minutes=10)
IMAGE_PULL_WAITING = {"ErrImagePull", "ImagePullBackOff"}
IMAGE_NEVER_PULLS = {"InvalidImageName", "ErrImageNeverPull"}
REQUEST_TIMEOUT = (5, 30)  # seconds: connect, read

# kind -> (API path prefix, plural, namespaced, words for progress messages)
KINDS = {
    "Namespace": ("/api/v1", "namespaces", False, "namespace"),
    "ResourceQuota": ("/api/v1", "resourcequotas", True, "resource quota"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True, "volume claim"),
    "Service": ("/api/v1", "services", True, "service"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True, "stateful set"),
    "Pod": ("/api/v1", "pods", True, "pod"),
    "Node": ("/api/v1", "nodes", False, "node"),
}
# What shared mode deletes, by label, to remove a workspace (pods go with their set).
SHARED_MODE_KINDS = ("StatefulSet", "Service", "PersistentVolumeClaim")


def options_from_settings() -> m.ManifestOptions:
    defaults = m.ManifestOptions()
    return m.ManifestOptions(
        namespace_mode=getattr(settings, "KUBERNETES_NAMESPACE_MODE", defaults.namespace_mode),
        shared_namespace=getattr(
            settings, "KUBERNETES_SHARED_NAMESPACE", defaults.shared_namespace
        ),
        image=getattr(settings, "KUBERNETES_WORKSPACE_IMAGE", defaults.image),
        storage_class=getattr(settings, "KUBERNETES_STORAGE_CLASS", defaults.storage_class),
    )


def object_path(kind: str, name: str = "", namespace: str = "") -> str:
    prefix, plural, namespaced, _ = KINDS[kind]
    path = (
        f"{prefix}/namespaces/{namespace}/{plural}"
        if namespaced and namespace
        else (f"{prefix}/{plural}")
    )
    return f"{path}/{name}" if name else path


@dataclass(frozen=True)
class KubeNodeInfo(NodeInfo):
    """A node, plus what the device plugin says is allocatable ("nvidia.com/gpu": 8, ...)."""

    allocatable: dict[str, int] = field(default_factory=dict)


class KubernetesDriver(Driver):
    def __init__(self, infrastructure, options: m.ManifestOptions | None = None):
        super().__init__(infrastructure)
        self.options = options or options_from_settings()
        self._api: ApiClient | None = None

    # --- the interface ------------------------------------------------------------------

    def provision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        namespace = m.namespace_for(spec, self.options)
        if self.options.namespace_mode == m.NAMESPACE_MODE:
            self._check_namespace_is_ours(spec, namespace)
        # Nodes drained for repartitioning take no new workspaces.
        avoid = draining_nodes(self.infrastructure)
        pins = self._pin_groups(spec, namespace, avoid, report)
        options = replace(self.options, avoid_nodes=avoid, pin_nodes=pins)
        for obj in m.render(spec, options):
            kind, meta = obj["kind"], obj["metadata"]
            code, _ = self._request(
                "PATCH",
                object_path(kind, meta["name"], meta.get("namespace", "")),
                body=obj,
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                content_type=APPLY_CONTENT_TYPE,
                what=f"{kind} {meta['name']}",
            )
            if code == 201:
                report(f"{KINDS[kind][3]} {meta['name']} created")
        return self._observe(spec, report)

    def status(self, spec: WorkspaceSpec) -> ProvisionResult:
        return self._observe(spec, ignore_progress)

    def deprovision(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        namespace = m.namespace_for(spec, self.options)
        if self.options.namespace_mode == m.SHARED_MODE:
            self._delete_labelled(spec, namespace, report)
            return
        found = self._get("Namespace", namespace)
        if found is None:
            return
        if not _belongs_to(found, spec):
            raise PermanentError(
                f"Namespace {namespace} exists but is not this workspace's; it was left alone."
            )
        if not found["metadata"].get("deletionTimestamp"):
            self._delete("Namespace", namespace)
            report(f"namespace {namespace} deletion started")
        if self._get("Namespace", namespace) is not None:
            # The task retries until the namespace, its pods and its volumes are gone.
            raise TransientError(f"Namespace {namespace} is still being deleted.")
        report(f"namespace {namespace} deleted")

    def stop(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> None:
        """Scale every StatefulSet of the workspace to 0 replicas; its volumes stay.

        The StatefulSets are applied whole (as `provision` renders them) with `replicas: 0`
        under the portal's own field manager: an apply of only `spec.replicas` by the same
        manager would drop every other field it owns. Done when no pod is left.
        """
        namespace = m.namespace_for(spec, self.options)
        # Keep each group's node pin, so that `start` brings the pods back to their node.
        options = replace(self.options, pin_nodes=self._recorded_pins(spec, namespace)[1])
        for obj in m.render(spec, options):
            if obj["kind"] != "StatefulSet":
                continue
            name = obj["metadata"]["name"]
            if self._get("StatefulSet", name, namespace) is None:
                continue  # nothing to stop (a retry, or never made)
            obj["spec"]["replicas"] = 0
            self._request(
                "PATCH",
                object_path("StatefulSet", name, namespace),
                body=obj,
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                content_type=APPLY_CONTENT_TYPE,
                what=f"StatefulSet {name}",
            )
            report(f"stateful set {name} scaled to 0")
        if self._list("Pod", namespace, m.workspace_selector(spec)):
            raise TransientError(f"The pods of {spec.name} are still terminating.")
        report("all pods stopped; volumes kept")

    def start(self, spec: WorkspaceSpec, report: Reporter = ignore_progress) -> ProvisionResult:
        """Apply the StatefulSets again with `node_count` replicas; wait like provision."""
        namespace = m.namespace_for(spec, self.options)
        for group in spec.groups:
            name = m.group_name(spec, group)
            if self._get("StatefulSet", name, namespace) is None:
                raise PermanentError(
                    f"StatefulSet {name} of {spec.name} is gone from namespace {namespace}; "
                    "the workspace cannot be started."
                )
        return self.provision(spec, report)

    def inventory(self) -> list[NodeInfo]:
        _, listed = self._request("GET", object_path("Node"), what="the nodes")
        nodes: list[NodeInfo] = []
        for node in listed.get("items", []):
            labels = node["metadata"].get("labels") or {}
            allocatable = {
                key: _int(value)
                for key, value in (node.get("status", {}).get("allocatable") or {}).items()
                if key == m.GPU_RESOURCE or key.startswith("nvidia.com/mig-")
            }
            product = labels.get(m.PRODUCT_LABEL, "")
            model = gpu_model_for_product_label(product) if product else None
            count = _int(labels.get("nvidia.com/gpu.count")) or allocatable.get(m.GPU_RESOURCE, 0)
            mig = "-MIG-" in product.upper() or any(k != m.GPU_RESOURCE for k in allocatable)
            gpus = tuple(
                GpuInfo(
                    index=index,
                    gpu_model=model.code if model else "",
                    memory_mib=_int(labels.get("nvidia.com/gpu.memory")),
                    mig_enabled=mig,
                )
                for index in range(count)
            )
            nodes.append(
                KubeNodeInfo(
                    name=node["metadata"]["name"],
                    gpus=gpus,
                    labels=dict(labels),
                    allocatable=allocatable,
                )
            )
        return nodes

    def managed_names(self) -> set[str]:
        selector = f"{m.MANAGED_BY_LABEL}={m.MANAGED_BY}"
        if self.options.namespace_mode == m.NAMESPACE_MODE:
            found = self._list("Namespace", "", selector)
        else:
            namespace = self.options.shared_namespace
            found = [o for kind in SHARED_MODE_KINDS for o in self._list(kind, namespace, selector)]
        names = {(o["metadata"].get("labels") or {}).get(m.WORKSPACE_LABEL) for o in found}
        return {name for name in names if name}

    # --- steps --------------------------------------------------------------------------

    def _check_namespace_is_ours(self, spec: WorkspaceSpec, namespace: str) -> None:
        found = self._get("Namespace", namespace)
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
            found = self._get("StatefulSet", m.group_name(spec, group), namespace)
            if found is None:
                continue
            existing.add(group.index)
            node = m.pinned_node(found)
            if node:
                pins[group.index] = node
        return existing, pins

    def _pin_groups(
        self, spec: WorkspaceSpec, namespace: str, avoid: tuple[str, ...], report: Reporter
    ) -> dict[int, str]:
        """The node each GPU group's pods are pinned to, placed with the fleet engine.

        A group whose StatefulSet exists keeps the pin recorded in it (or none): a re-apply
        never moves a workspace. The others are placed on a fleet built from the cluster
        (`build_fleet`). A group spanning several nodes is not pinned: the engine places a
        group on one host, and one StatefulSet template cannot pin each replica to its own
        node, so the scheduler spreads those replicas as before.
        """
        existing, pins = self._recorded_pins(spec, namespace)
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
        nodes = [n for n in self.inventory() if _is_gpu_node(n)]
        if not nodes:
            report("the cluster reports no GPU nodes; the scheduler places the workspace")
            return pins
        _, listed = self._request("GET", object_path("Pod"), what="the pods")
        pods = listed.get("items", [])
        request = placement.Request(
            f"workspace:{spec.name}",
            tuple(
                placement.ResourceGroup(
                    count=g.gpu_count,
                    gpu_model=g.gpu_model or None,
                    profile=g.mig_profile or None,
                )
                for g in todo
            ),
        )
        fleet = build_fleet([n for n in nodes if n.name not in avoid], pods)
        chosen = placement.place(fleet, request)
        if chosen is None:
            wanted = ", ".join(_describe(g) for g in todo)
            if placement.place(build_fleet(nodes, []), request) is None:
                raise PermanentError(
                    f"No node of the cluster can hold {wanted} even when idle; "
                    f"{spec.name} cannot be placed."
                )
            raise TransientError(f"no node has room for {wanted} now.")
        for group, node in zip(todo, _hosts_by_group(todo, chosen), strict=True):
            pins[group.index] = node
            report(f"group {group.index} placed on node {node}")
        return pins

    def _observe(self, spec: WorkspaceSpec, report: Reporter) -> ProvisionResult:
        """Where the workspace's pods stand; reports which node each pod landed on."""
        namespace = m.namespace_for(spec, self.options)
        pods = {
            pod["metadata"]["name"]: pod
            for pod in self._list("Pod", namespace, m.workspace_selector(spec))
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
            reason = _waiting_reason(name, pod)
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
            for obj in self._list(kind, namespace, selector):
                name = obj["metadata"]["name"]
                if self._delete(kind, name, namespace):
                    report(f"{KINDS[kind][3]} {name} deleted")
        if self._list("Pod", namespace, selector):
            raise TransientError(f"The pods of {spec.name} are still terminating.")

    # --- API calls ----------------------------------------------------------------------

    def _get(self, kind: str, name: str, namespace: str = "") -> dict | None:
        return self._request(
            "GET", object_path(kind, name, namespace), what=f"{kind} {name}", missing_ok=True
        )[1]

    def _list(self, kind: str, namespace: str, selector: str) -> list[dict]:
        _, listed = self._request(
            "GET",
            object_path(kind, namespace=namespace),
            query=[("labelSelector", selector)],
            what=f"the {KINDS[kind][1]}",
        )
        return listed.get("items", [])

    def _delete(self, kind: str, name: str, namespace: str = "") -> bool:
        """Delete one object; False when it was already gone."""
        code, _ = self._request(
            "DELETE",
            object_path(kind, name, namespace),
            query=[("propagationPolicy", "Background")],
            what=f"{kind} {name}",
            missing_ok=True,
        )
        return code != 404

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            kubeconfig = self.infrastructure.kubeconfig
            if not kubeconfig:
                raise PermanentError(f"{self.infrastructure} has no kubeconfig.")
            try:
                loaded = yaml.safe_load(kubeconfig)
                if not isinstance(loaded, dict):
                    raise ConfigException("not a YAML mapping")
                self._api = new_client_from_config_dict(loaded, persist_config=False)
            except (yaml.YAMLError, ConfigException, KeyError, TypeError, ValueError) as error:
                raise PermanentError(
                    f"The kubeconfig of {self.infrastructure} cannot be used.", str(error)
                ) from error
        return self._api

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: dict | None = None,
        query: list | None = None,
        content_type: str | None = None,
        missing_ok: bool = False,
    ) -> tuple[int, dict | None]:
        """One API call; returns (HTTP status, parsed body), or (404, None) if missing_ok."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        api = self.api
        try:
            request = api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
            response.read()
        except ApiException as error:  # raised before any status came back (e.g. TLS)
            raise TransientError(
                f"Cannot talk to the Kubernetes API at {api.configuration.host}.", str(error)
            ) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise TransientError(
                f"Cannot reach the Kubernetes API at {api.configuration.host}.", str(error)
            ) from error
        if response.status == 404 and missing_ok:
            return 404, None
        if not 200 <= response.status <= 299:
            raise _error(response.status, response.data, what)
        return response.status, json.loads(response.data or b"{}")


def _error(code: int, data: bytes, what: str) -> PermanentError | TransientError:
    try:
        message = json.loads(data).get("message") or ""
    except (ValueError, AttributeError):
        message = (data or b"").decode(errors="replace")[:500]
    detail = f"HTTP {code}: {message}"
    if code == 403 and "exceeded quota" in message:
        # Admission refused by the namespace's ResourceQuota, not an authorization failure.
        return PermanentError(f"The namespace's quota has no room for {what}: {message}", detail)
    if code in (401, 403):
        return PermanentError("The kubeconfig's credentials were refused by the cluster.", detail)
    if code in (409, 429) or code >= 500:
        return TransientError(f"The Kubernetes API is busy ({code}) with {what}.", detail)
    if code == 404:
        return TransientError(f"The Kubernetes API did not find {what}.", detail)
    return PermanentError(f"The cluster rejected {what}: {message}", detail)


# --- the fleet the placement engine sees -------------------------------------------------

IN_USE = "in-use"  # the allocation id of units that pods already request
DONE_PHASES = ("Succeeded", "Failed")


def _is_gpu_node(node: NodeInfo) -> bool:
    allocatable = getattr(node, "allocatable", {}) or {}
    return any(count > 0 for count in allocatable.values())


def _node_model(node: NodeInfo) -> tuple[str, bool]:
    """(the model key of the node's GPUs, whether its MIG slices can be modelled).

    The key is the catalog code only when the node's `nvidia.com/gpu.product` label is the
    one the manifests' nodeSelector uses for that model (`k8s_manifests.product_label`):
    a pin to a node the selector excludes would never schedule. Other nodes (the PCIe
    board of a model, the "single" MIG strategy's decorated label, unknown GPUs) keep the
    raw label, which no group with a model matches; their MIG slices are left out.
    """
    label = node.labels.get(m.PRODUCT_LABEL, "")
    model = gpu_model_for_product_label(label) if label else None
    if model is None or m.product_label(model.code) != label:
        return label or "unknown", False
    return model.code, model.code in mig_catalog.mig_capable_models()


def _mig_profile(gpu_model: str, resource: str) -> str | None:
    """The catalog profile behind `nvidia.com/mig-<name>` (1g.5gb.me -> 1g.5gb+me)."""
    for profile in mig_catalog.geometry(gpu_model).profiles:
        if mig_catalog.k8s_resource_name(profile.name) == resource:
            return profile.name
    return None


def _pack_slots(gpu_model: str, counts: dict[str, int]) -> list[dict[str, int]]:
    """Per-GPU layouts holding `counts` slices, packed greedily, largest profile first.

    An approximation: Kubernetes exposes per-node counts of each MIG resource, not which
    GPU holds which slice. It does not change where a group lands (the engine picks a
    host by its free units per kind), only which GPU id an assignment names.
    """
    size = {p.name: p.memory_slices for p in mig_catalog.geometry(gpu_model).profiles}
    gpus: list[dict[str, int]] = []
    for name in sorted(counts, key=lambda n: (-size[n], n)):
        for _ in range(counts[name]):
            for gpu in gpus:
                trial = {**gpu, name: gpu.get(name, 0) + 1}
                if layout.validate_layout(gpu_model, trial).ok:
                    gpu[name] = trial[name]
                    break
            else:
                gpus.append({name: 1})
    return gpus


def _pod_requests(pod: dict) -> dict[str, int]:
    """GPU and MIG units a pod holds: its containers' requests (requests default to limits),
    or its largest init container's when that is more, as the scheduler counts them."""

    def amounts(container: dict) -> dict[str, int]:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {
            k: _int(v)
            for k, v in merged.items()
            if k == m.GPU_RESOURCE or k.startswith("nvidia.com/mig-")
        }

    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for container in spec.get("containers") or []:
        for key, n in amounts(container).items():
            total[key] = total.get(key, 0) + n
    for container in spec.get("initContainers") or []:
        for key, n in amounts(container).items():
            total[key] = max(total.get(key, 0), n)
    return total


def _pod_node(pod: dict) -> str | None:
    """The node a live pod uses: where it is bound, else the node it is pinned to (a pod
    the portal just pinned and the scheduler has not bound yet)."""
    if (pod.get("status") or {}).get("phase") in DONE_PHASES:
        return None
    spec = pod.get("spec") or {}
    return spec.get("nodeName") or m.pinned_node({"spec": {"template": {"spec": spec}}})


def build_fleet(nodes: list[NodeInfo], pods: list[dict]) -> list[placement.GpuState]:
    """The placement engine's view of the cluster's GPU nodes, with what `pods` hold.

    Per node: one whole GPU per allocatable `nvidia.com/gpu`, and the allocatable
    `nvidia.com/mig-<profile>` slices (the device plugin's mixed strategy) packed onto GPUs
    of the node's model (`_pack_slots`). Units the pods request on the node are held.
    """
    used: dict[str, dict[str, int]] = {}
    for pod in pods:
        node = _pod_node(pod)
        if node:
            on_node = used.setdefault(node, {})
            for key, n in _pod_requests(pod).items():
                on_node[key] = on_node.get(key, 0) + n
    fleet = []
    for node in nodes:
        model, mig_ok = _node_model(node)
        allocatable = getattr(node, "allocatable", {}) or {}
        held = dict(used.get(node.name, {}))
        node_gpus = []
        for i in range(allocatable.get(m.GPU_RESOURCE, 0)):
            node_gpus.append(placement.GpuState(f"{node.name}/gpu-{i}", model, node.name))
        slices: dict[str, int] = {}
        if mig_ok:
            for resource, count in allocatable.items():
                profile = _mig_profile(model, resource)
                if profile and count > 0:
                    slices[profile] = count
        for i, counts in enumerate(_pack_slots(model, slices) if slices else []):
            node_gpus.append(
                placement.GpuState.mig(f"{node.name}/mig-{i}", model, counts, node.name)
            )
        for gpu in node_gpus:
            for unit in [None] if gpu.slots is None else gpu.slots:
                key = (
                    m.GPU_RESOURCE if unit is None else mig_catalog.k8s_resource_name(unit.profile)
                )
                if held.get(key, 0) > 0:
                    held[key] -= 1
                    if unit is None:
                        gpu.allocation = IN_USE
                    else:
                        unit.allocation = IN_USE
        fleet.extend(node_gpus)
    return fleet


def _hosts_by_group(groups, chosen: placement.Placement) -> list[str]:
    """The host of each group. `place` handles groups largest first (a stable sort) and
    lists each group's units together, so the assignments split by count in that order."""
    hosts: dict[int, str] = {}
    at = 0
    for i in sorted(range(len(groups)), key=lambda i: -groups[i].gpu_count):
        units = chosen.assignments[at : at + groups[i].gpu_count]
        at += groups[i].gpu_count
        found = {unit.host for unit in units}
        if len(found) != 1:
            raise RuntimeError(f"the placement of group {groups[i].index} spans {found}")
        hosts[i] = found.pop()
    return [hosts[i] for i in range(len(groups))]


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


def _waiting_reason(name: str, pod: dict) -> str:
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
    return f"pod {name} is {status.get('phase', 'Pending').lower()}, not ready yet"


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
