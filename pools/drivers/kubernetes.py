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
from profiles.catalog import gpu_model_for_product_label
from profiles.partitioning import draining_nodes

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
        options = replace(self.options, avoid_nodes=draining_nodes(self.infrastructure))
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
        for obj in m.render(spec, self.options):
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
