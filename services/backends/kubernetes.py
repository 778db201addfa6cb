"""Components as Kubernetes objects in the workspace's namespace (pure rendering + apply).

What runs is what the component's class declares (`Component.kubernetes()`: its container,
volumes, configuration files, extra Deployments); this module renders it the same way for
every component. Per component, under the stable name `<workspace>-<component>` and with
the workspace's labels (`pools.drivers.k8s_manifests.workspace_labels`) plus
`gpupaas.io/component`:
- a Secret with its generated credential under its `secret_key`, when it has one,
- a ConfigMap with its configuration files, when it declares some,
- a PersistentVolumeClaim `<name>-data` when it declares `storage_gb`,
- a Deployment (strategy Recreate) requesting the component's `cpu`, `memory_gb` and
  `gpus` (with the GPU tolerations and the workspace's GPU model as node selector), with a
  readiness probe where the class declares a health check, and one more Deployment per
  group of workers it declares,
- a ClusterIP Service with its ports.
A component that declares no pods (a binding) has only its Secret and ConfigMap, and is
ready at once.

The namespace's ResourceQuota (namespace mode). The workspace's quota caps the namespace at
the compute profile's totals, which its own pods use up, so a stack's pods and claims would
be refused by quota admission. The quota is therefore always *derived*: the profile's totals
(`k8s_manifests.quota_manifest`) plus what the stack's objects on the cluster ask for (per
Deployment replicas x its pod's requests and limits; per claim one claim and its storage),
applied by the same field manager as the driver's (`k8s_manifests.quota_with`). Deploying a
component applies it with the component's objects counted *before* applying them (a claim
over quota is refused at once), and again after (so a stack applied at the same time by
another task is counted too); removing one applies it without the component once its
objects are deleted; `remove_all` applies the bare profile totals while the quota still
exists. Deriving it from the cluster keeps every step idempotent: a retry computes the same
quota. Shrinking below what terminating pods still use is allowed; it only stops new pods.
The driver's `provision` applies the bare totals; it runs before any stack is deployed (a
deployment waits for the workspace to be ready), and the next deploy restores the share.

GPUs of components (the `gpus` parameter, e.g. the training runner and the inference
server) are *their own* GPUs: on Kubernetes a GPU belongs to one pod (no time-slicing is
assumed), and the workspace's pods keep theirs, so the quota grows by the components' GPUs
(`requests.nvidia.com/gpu`) and the cluster must have them free on the workspace's GPU model.
On the local driver, by contrast, components run on the workspace's machine and its GPUs.

Every Deployment uses the Recreate strategy: the quota has no headroom for the extra pod of
a rolling update, which would otherwise wait forever for room.

Status: a component is ready when each Deployment it declares is on the cluster with the
replicas it declares, has that many pods of its role and every one is Ready; while not, the
reason names the missing or rescaled Deployment, the Deployment's `ReplicaFailure`
condition (e.g. "exceeded quota") when its pods cannot be created, or the waiting pod.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from fractions import Fraction

from pools import kube
from pools.drivers import k8s_manifests as m
from pools.drivers.base import PermanentError, TransientError, WorkspaceSpec
from pools.drivers.kubernetes import KubernetesDriver, waiting_reason
from services.backends.base import (
    DEPLOYING,
    READY,
    ComponentContext,
    ComponentResult,
    ServicesBackend,
)
from services.components import (
    COMPONENTS,
    Component,
    KubeWorkload,
    NotRunnable,
    Target,
    object_name,
)

COMPONENT_LABEL = "gpupaas.io/component"
STACK_LABEL = "app.kubernetes.io/part-of"
NAME_LABEL = "app.kubernetes.io/name"
ROLE_LABEL = "gpupaas.io/role"
PLACEHOLDER_SECRET = "<generated at deploy time>"


def target(ctx: ComponentContext) -> Target:
    return Target(
        workspace=ctx.spec.name, name=ctx.name, version=ctx.version, parameters=ctx.parameters
    )


def workload(ctx: ComponentContext) -> KubeWorkload:
    """What the component's class declares for Kubernetes."""
    try:
        return ctx.component.kubernetes(target(ctx))
    except NotRunnable as error:
        raise PermanentError(str(error)) from None


def component_labels(ctx: ComponentContext) -> dict[str, str]:
    labels = m.workspace_labels(ctx.spec)
    labels.update({COMPONENT_LABEL: ctx.code, NAME_LABEL: ctx.code})
    if ctx.stack:
        labels[STACK_LABEL] = m.label_value(ctx.stack) or "services"
    return labels


def _selector(ctx: ComponentContext, role: str = "") -> dict[str, str]:
    selector = {m.WORKSPACE_LABEL: ctx.spec.name, COMPONENT_LABEL: ctx.code}
    if role:
        selector[ROLE_LABEL] = role
    return selector


def _meta(ctx: ComponentContext, name: str, options: m.ManifestOptions) -> dict:
    return {
        "name": name,
        "namespace": m.namespace_for(ctx.spec, options),
        "labels": component_labels(ctx),
    }


def _gpu_group(spec: WorkspaceSpec):
    return next((g for g in spec.groups if g.gpu_count and not g.mig_profile), None)


def _resources(ctx: ComponentContext) -> tuple[dict, bool]:
    params = ctx.parameters
    amounts = {"cpu": str(params.get("cpu", 1)), "memory": f"{params.get('memory_gb', 2)}Gi"}
    gpus = int(params.get("gpus", 0))
    if gpus:
        amounts[m.GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}, bool(gpus)


def _container(ctx: ComponentContext, work: KubeWorkload) -> dict:
    """The main container: what the class declares, with its image, the workspace's name in
    the environment, its resources and its readiness probe."""
    c: dict = {"name": ctx.code, "image": ctx.component.image_for(ctx.version)}
    c.update(work.container)
    c["env"] = [{"name": "GPUPAAS_WORKSPACE", "value": ctx.spec.name}, *c.get("env", [])]
    c["resources"], _ = _resources(ctx)
    c["securityContext"] = m.CONTAINER_SECURITY
    health = ctx.component.health
    if health is not None:
        c["readinessProbe"] = {
            "httpGet": {"path": health.path, "port": health.port},
            "periodSeconds": 10,
            "failureThreshold": 30,
        }
    return c


def _volumes(ctx: ComponentContext, work: KubeWorkload, container: dict) -> list[dict]:
    volumes, mounts = [], []
    if "storage_gb" in ctx.parameters:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": f"{ctx.name}-data"}})
        mounts.append({"name": "data", "mountPath": work.data_path})
    elif work.scratch:
        volumes.append({"name": "data", "emptyDir": {}})
        mounts.append({"name": "data", "mountPath": work.data_path})
    if work.config_files is not None and work.config_path:
        volumes.append({"name": "config", "configMap": {"name": ctx.name}})
        mounts.append({"name": "config", "mountPath": work.config_path, "readOnly": True})
    if mounts:
        container["volumeMounts"] = mounts
    return volumes


def _pod_spec(ctx: ComponentContext, work: KubeWorkload, container: dict) -> dict:
    pod: dict = {"containers": [container]}
    if not work.cluster_api:
        pod["automountServiceAccountToken"] = False
    volumes = _volumes(ctx, work, container)
    if volumes:
        pod["volumes"] = volumes
    _, wants_gpu = _resources(ctx)
    if wants_gpu:
        group = _gpu_group(ctx.spec)
        product = m.product_label(group.gpu_model) if group else None
        if product:
            pod["nodeSelector"] = {m.PRODUCT_LABEL: product}
        pod["tolerations"] = [
            {"key": m.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
            {"key": m.GPU_RESOURCE, "operator": "Exists", "effect": "NoExecute"},
        ]
    return pod


def _deployment(ctx, work, options, name, role, container, replicas=1) -> dict:
    labels = {**component_labels(ctx), ROLE_LABEL: role}
    meta = _meta(ctx, name, options)
    meta["labels"] = labels
    spec: dict = {
        "replicas": replicas,
        "selector": {"matchLabels": _selector(ctx, role)},
        "template": {"metadata": {"labels": labels}, "spec": _pod_spec(ctx, work, container)},
    }
    # One pod at a time: it may hold a ReadWriteOnce volume, and the quota has no headroom
    # for a rolling update's extra pod.
    spec["strategy"] = {"type": "Recreate"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def render_component(
    ctx: ComponentContext, secret: str = "", options: m.ManifestOptions | None = None
) -> list[dict]:
    """Every object of one component, in the order to apply them."""
    options = options or m.ManifestOptions()
    work = workload(ctx)
    objects: list[dict] = []
    if ctx.component.has_secret:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta(ctx, ctx.name, options),
                "type": "Opaque",
                "stringData": {ctx.component.secret_key: secret or PLACEHOLDER_SECRET},
            }
        )
    if work.config_files is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(ctx, ctx.name, options),
                "data": dict(work.config_files),
            }
        )
    if not work.pods:
        return objects
    if "storage_gb" in ctx.parameters:
        claim: dict = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": f"{ctx.parameters['storage_gb']}Gi"}},
        }
        if options.storage_class:
            claim["storageClassName"] = options.storage_class
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": _meta(ctx, f"{ctx.name}-data", options),
                "spec": claim,
            }
        )
    container = _container(ctx, work)
    objects.append(_deployment(ctx, work, options, ctx.name, "main", container))
    for workers in work.workers:
        other = {**container, **workers.overrides}
        other.pop("ports", None)
        name = f"{ctx.name}-{workers.suffix}"
        objects.append(_deployment(ctx, work, options, name, workers.role, other, workers.replicas))
    ports = [
        {"name": p["name"], "port": p["containerPort"], "targetPort": p["name"]}
        for p in container.get("ports", [])
    ]
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(ctx, ctx.name, options),
            "spec": {"type": "ClusterIP", "selector": _selector(ctx, "main"), "ports": ports},
        }
    )
    return objects


def endpoints(ctx: ComponentContext, options: m.ManifestOptions) -> list[dict]:
    namespace = m.namespace_for(ctx.spec, options)
    return ctx.component.cluster_endpoints(f"{ctx.name}.{namespace}.svc")


class KubernetesServices(ServicesBackend):
    """Applies `render_component` with the portal's Kubernetes client (`pools.kube`),
    server-side, under the driver's field manager and with the driver's manifest options."""

    def __init__(self, infrastructure):
        super().__init__(infrastructure)
        self.driver = KubernetesDriver(infrastructure)

    @property
    def options(self) -> m.ManifestOptions:
        return self.driver.options

    @property
    def kube(self) -> kube.KubeClient:
        return self.driver.kube

    def deploy(self, ctx: ComponentContext) -> ComponentResult:
        secret = (ctx.secret or secrets.token_urlsafe(24)) if ctx.component.has_secret else ""
        objects = render_component(ctx, secret, self.options)
        self._sync_quota(ctx.spec, exclude=ctx.code, adding=objects)
        for obj in objects:
            self.apply(obj)
        self._sync_quota(ctx.spec)
        result = self.check(ctx)
        result.secret = secret
        return result

    def check(self, ctx: ComponentContext) -> ComponentResult:
        """Ready when every Deployment the component declares (`render_component`) is on the
        cluster with the replicas it declares and has that many pods of its role, all
        Ready: a Deployment deleted or scaled down by hand is not Ready, so the watch
        repairs it."""
        namespace = m.namespace_for(ctx.spec, self.options)
        declared = [
            obj
            for obj in render_component(ctx, options=self.options)
            if obj["kind"] == "Deployment"
        ]
        if not declared:  # a binding: nothing to wait for
            return ComponentResult(READY, endpoints=[], detail={"namespace": namespace})
        selector = f"{m.WORKSPACE_LABEL}={ctx.spec.name},{COMPONENT_LABEL}={ctx.code}"
        found = {
            d["metadata"]["name"]: d for d in self.kube.list("Deployment", namespace, selector)
        }
        pods = self.kube.list("Pod", namespace, selector)
        detail = {"namespace": namespace, "pods": [p["metadata"]["name"] for p in pods]}
        problems = [
            problem
            for deployment in declared
            for problem in _deployment_problems(
                deployment, found.get(deployment["metadata"]["name"]), pods
            )
        ]
        if not problems:
            return ComponentResult(READY, endpoints=endpoints(ctx, self.options), detail=detail)
        return ComponentResult(DEPLOYING, reason=problems[0], detail=detail)

    def restart(self, ctx: ComponentContext) -> ComponentResult:
        """Delete its pods, so that its Deployments make new ones, and apply it again (what
        was deleted comes back); its claim, and the data on it, stay."""
        namespace = m.namespace_for(ctx.spec, self.options)
        selector = f"{m.WORKSPACE_LABEL}={ctx.spec.name},{COMPONENT_LABEL}={ctx.code}"
        for pod in self.kube.list("Pod", namespace, selector):
            self.kube.delete("Pod", pod["metadata"]["name"], namespace)
        return self.deploy(ctx)

    def remove(self, ctx: ComponentContext) -> None:
        namespace = m.namespace_for(ctx.spec, self.options)
        selector = f"{m.WORKSPACE_LABEL}={ctx.spec.name},{COMPONENT_LABEL}={ctx.code}"
        self._delete_selected(namespace, selector, ctx.spec, [ctx.component], exclude=ctx.code)

    def remove_all(self, spec: WorkspaceSpec) -> None:
        namespace = m.namespace_for(spec, self.options)
        selector = f"{m.WORKSPACE_LABEL}={spec.name},{COMPONENT_LABEL}"
        self._delete_selected(namespace, selector, spec, COMPONENTS.values(), exclude="*")

    def _delete_selected(
        self, namespace: str, selector: str, spec, components: Iterable[Component], exclude: str
    ) -> None:
        for kind in ("Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"):
            for obj in self.kube.list(kind, namespace, selector):
                self.kube.delete(kind, obj["metadata"]["name"], namespace)
        # The Secrets of `components` by name: listing Secrets would take the right to read
        # every Secret of the cluster (deploy/base/rbac.yaml).
        for component in components:
            if component.has_secret:
                self.kube.delete("Secret", object_name(spec.name, component.code), namespace)
        self._sync_quota(spec, exclude=exclude)
        if self.kube.list("Pod", namespace, selector):
            raise TransientError("The services' pods are still terminating.")

    def apply(self, obj: dict) -> None:
        """Server-side apply one object (PermanentError when its quota has no room)."""
        self.kube.apply(obj)

    def _sync_quota(self, spec: WorkspaceSpec, exclude: str = "", adding=()) -> None:
        """Apply the namespace's quota: the profile's totals plus the stack's share.

        The share counts the stack's Deployments and claims on the cluster, less those of
        component `exclude` ("*": all of them), plus the objects `adding`. Nothing to do in
        shared mode (no quota) or when the quota is gone (the workspace is being deleted).
        """
        options = self.options
        if options.namespace_mode != m.NAMESPACE_MODE:
            return
        namespace = m.namespace_for(spec, options)
        quota = m.quota_manifest(spec, options)
        if self.kube.get("ResourceQuota", quota["metadata"]["name"], namespace) is None:
            return
        present: list[dict] = []
        if exclude != "*":
            selector = f"{m.WORKSPACE_LABEL}={spec.name},{COMPONENT_LABEL}"
            for kind in ("Deployment", "PersistentVolumeClaim"):
                present += [
                    {**o, "kind": kind}  # a list's items need not carry their kind
                    for o in self.kube.list(kind, namespace, selector)
                    if o["metadata"]["labels"].get(COMPONENT_LABEL) != exclude
                ]
        kept = {(o["kind"], o["metadata"]["name"]) for o in adding}
        present = [o for o in present if (o["kind"], o["metadata"]["name"]) not in kept]
        self.apply(m.quota_with(spec, options, stack_usage([*present, *adding])))


def _deployment_problems(declared: dict, found: dict | None, pods: list[dict]) -> list[str]:
    """Why a declared Deployment is not ready: absent, scaled otherwise than declared, its
    pods refused (its `ReplicaFailure` condition), missing or not Ready."""
    name = declared["metadata"]["name"]
    if found is None:
        return [f"deployment {name} is not on the cluster"]
    wanted = declared["spec"]["replicas"]
    replicas = found["spec"].get("replicas", 1)
    if replicas != wanted:
        return [f"deployment {name} is scaled to {replicas} pods, not {wanted}"]
    problems = [
        f"deployment {name} cannot create its pods: {c.get('message', '')}"
        for c in (found.get("status") or {}).get("conditions") or []
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
    ]
    role = declared["spec"]["selector"]["matchLabels"][ROLE_LABEL]
    own = [p for p in pods if (p["metadata"].get("labels") or {}).get(ROLE_LABEL) == role]
    problems.extend(reason for p in own if (reason := waiting_reason(p["metadata"]["name"], p)))
    if len(own) < wanted and not problems:
        problems.append("pods are not created yet")
    return problems


def stack_usage(objects) -> dict[str, Fraction]:
    """What the stack's Deployments and claims count against the namespace's quota."""
    usage: dict[str, Fraction] = {}

    def add(amounts: dict) -> None:
        for key, amount in amounts.items():
            usage[key] = usage.get(key, Fraction(0)) + amount

    for obj in objects:
        if obj["kind"] == "Deployment":
            spec = obj["spec"]
            add(m.pod_quota_usage(spec["template"]["spec"], int(spec.get("replicas", 1))))
        elif obj["kind"] == "PersistentVolumeClaim":
            storage = obj["spec"]["resources"]["requests"]["storage"]
            add({"persistentvolumeclaims": 1, "requests.storage": m.parse_quantity(storage)})
    return usage
