"""Components as Kubernetes objects in the workspace's namespace (pure rendering + apply).

Per component, under the stable name `<workspace>-<component>` and with the workspace's
labels (`pools.drivers.k8s_manifests.workspace_labels`) plus `gpupaas.io/component`:
- a Secret with its generated credential (Jupyter token, jobs-queue token, MinIO root
  password, the SSO proxy's cookie secret), when it has one,
- a PersistentVolumeClaim `<name>-data` when it declares `storage_gb`,
- a ConfigMap with its configuration files (the jobs queue's script, Feast's
  feature_store.yaml, the GCS binding),
- a Deployment (strategy Recreate when it holds a volume) requesting the component's
  `cpu`, `memory_gb` and `gpus` (with the GPU tolerations and the workspace's GPU model as
  node selector), with a readiness probe where the software has a health endpoint,
- a ClusterIP Service with its ports.
Ray with `workers > 0` adds a worker Deployment joining the head. GCS is only a binding.

Kubeflow Pipelines is rendered as its API server wired to the stack's object store; a full
installation also needs its cluster-scoped manifests (CRDs, Argo), which an administrator
installs once per cluster.

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

Status: a component is ready when each of its Deployments has all its replicas as pods and
every pod is Ready; while not, the reason names the waiting pod, or the Deployment's
`ReplicaFailure` condition (e.g. "exceeded quota") when its pods cannot be created.
"""

from __future__ import annotations

import secrets
from fractions import Fraction
from pathlib import Path

from pools.drivers import k8s_manifests as m
from pools.drivers import kubernetes as k
from pools.drivers.base import TransientError, WorkspaceSpec
from services.backends.base import (
    DEPLOYING,
    READY,
    ComponentContext,
    ComponentResult,
    ServicesBackend,
)

COMPONENT_LABEL = "gpupaas.io/component"
STACK_LABEL = "app.kubernetes.io/part-of"
NAME_LABEL = "app.kubernetes.io/name"
JOBRUNNER = Path(__file__).with_name("jobrunner.py")
WITH_SECRET = {"jupyterlab", "job-queue", "training-runner", "minio", "oauth2-proxy"}
HEALTH = {
    "jupyterlab": ("/api", 8888),
    "mlflow": ("/health", 5000),
    "job-queue": ("/health", 8080),
    "training-runner": ("/health", 8080),
    "inference-server": ("/health", 8000),
    "minio": ("/minio/health/ready", 9000),
    "oauth2-proxy": ("/ping", 4180),
}


def component_labels(ctx: ComponentContext) -> dict[str, str]:
    labels = m.workspace_labels(ctx.spec)
    labels.update({COMPONENT_LABEL: ctx.code, NAME_LABEL: ctx.code})
    if ctx.stack:
        labels[STACK_LABEL] = m.label_value(ctx.stack) or "services"
    return labels


def _selector(ctx: ComponentContext, role: str = "") -> dict[str, str]:
    selector = {m.WORKSPACE_LABEL: ctx.spec.name, COMPONENT_LABEL: ctx.code}
    if role:
        selector["gpupaas.io/role"] = role
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


def _secret_env(ctx: ComponentContext, env_name: str, key: str = "token") -> dict:
    return {
        "name": env_name,
        "valueFrom": {"secretKeyRef": {"name": ctx.name, "key": key}},
    }


def _container(ctx: ComponentContext) -> dict:
    """Image, command, ports and environment of the component's main container."""
    code, params, name = ctx.code, ctx.parameters, ctx.name
    image = ctx.component.image.format(version=ctx.version)
    c: dict = {"name": code, "image": image}
    if code == "jupyterlab":
        c["args"] = [
            "start-notebook.py",
            "--ServerApp.root_dir=/home/jovyan/work",
            f"--ServerApp.default_url={params.get('default_url', '/lab')}",
        ]
        c["env"] = [_secret_env(ctx, "JUPYTER_TOKEN")]
        c["ports"] = [{"name": "http", "containerPort": 8888}]
    elif code == "mlflow":
        c["command"] = ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
        c["args"] = [
            "--workers",
            str(params.get("workers", 1)),
            "--backend-store-uri",
            "sqlite:////data/mlflow.db",
            "--default-artifact-root",
            str(params.get("artifact_root") or "/data/artifacts"),
        ]
        c["ports"] = [{"name": "http", "containerPort": 5000}]
    elif code == "ray":
        c["command"] = ["ray", "start", "--head", "--port=6379", "--block"]
        c["args"] = ["--dashboard-host=0.0.0.0", "--disable-usage-stats"]
        c["ports"] = [
            {"name": "gcs", "containerPort": 6379},
            {"name": "dashboard", "containerPort": 8265},
            {"name": "client", "containerPort": 10001},
        ]
    elif code in ("job-queue", "training-runner"):
        c["command"] = ["python", "/opt/jobrunner/jobrunner.py"]
        c["args"] = [
            "--port",
            "8080",
            "--state-dir",
            "/data/jobs",
            "--workdir",
            "/data",
            "--max-parallel",
            str(params.get("max_parallel", 1)),
        ]
        c["env"] = [_secret_env(ctx, "JOBRUNNER_TOKEN")]
        c["ports"] = [{"name": "http", "containerPort": 8080}]
    elif code == "inference-server":
        c["args"] = ["--model", str(params.get("model")), "--port", "8000"]
        c["ports"] = [{"name": "http", "containerPort": 8000}]
    elif code == "kubeflow-pipelines":
        store = f"{ctx.spec.name}-minio"
        c["env"] = [
            {"name": "OBJECTSTORECONFIG_HOST", "value": store},
            {"name": "OBJECTSTORECONFIG_PORT", "value": "9000"},
            {"name": "OBJECTSTORECONFIG_SECURE", "value": "false"},
            {"name": "OBJECTSTORECONFIG_BUCKETNAME", "value": "mlpipeline"},
            {"name": "MLFLOW_TRACKING_URI", "value": f"http://{ctx.spec.name}-mlflow:5000"},
        ]
        c["ports"] = [
            {"name": "http", "containerPort": 8888},
            {"name": "grpc", "containerPort": 8887},
        ]
    elif code == "feast":
        c["command"] = ["feast", "serve", "--host", "0.0.0.0", "--port", "6566"]
        c["workingDir"] = "/feature_repo"
        c["ports"] = [{"name": "http", "containerPort": 6566}]
    elif code == "minio":
        c["args"] = ["server", "/data", "--console-address", ":9001"]
        c["env"] = [
            {"name": "MINIO_ROOT_USER", "value": "admin"},
            _secret_env(ctx, "MINIO_ROOT_PASSWORD"),
        ]
        c["ports"] = [
            {"name": "s3", "containerPort": 9000},
            {"name": "console", "containerPort": 9001},
        ]
    elif code == "oauth2-proxy":
        c["args"] = [
            "--http-address=0.0.0.0:4180",
            "--provider=oidc",  # Okta is an OpenID Connect provider
            f"--oidc-issuer-url={params.get('issuer_url') or 'https://example.okta.com'}",
            f"--upstream=http://{ctx.spec.name}-jupyterlab:8888",
            "--email-domain=*",
        ]
        c["env"] = [
            _secret_env(ctx, "OAUTH2_PROXY_COOKIE_SECRET", "cookie-secret"),
            {
                "name": "OAUTH2_PROXY_CLIENT_ID",
                "valueFrom": {"secretKeyRef": {"name": name, "key": "client-id", "optional": True}},
            },
        ]
        c["ports"] = [{"name": "http", "containerPort": 4180}]
    c["env"] = [
        {"name": "GPUPAAS_WORKSPACE", "value": ctx.spec.name},
        *c.get("env", []),
    ]
    c["resources"], _ = _resources(ctx)
    if code in HEALTH:
        path, port = HEALTH[code]
        c["readinessProbe"] = {
            "httpGet": {"path": path, "port": port},
            "periodSeconds": 10,
            "failureThreshold": 30,
        }
    return c


def _volumes(ctx: ComponentContext, container: dict) -> list[dict]:
    volumes, mounts = [], []
    if "storage_gb" in ctx.parameters:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": f"{ctx.name}-data"}})
        path = "/home/jovyan/work" if ctx.code == "jupyterlab" else "/data"
        if ctx.code == "inference-server":
            path = "/root/.cache/huggingface"
        mounts.append({"name": "data", "mountPath": path})
    elif ctx.code == "training-runner":
        volumes.append({"name": "data", "emptyDir": {}})
        mounts.append({"name": "data", "mountPath": "/data"})
    if ctx.code in ("job-queue", "training-runner"):
        volumes.append({"name": "config", "configMap": {"name": ctx.name}})
        mounts.append({"name": "config", "mountPath": "/opt/jobrunner", "readOnly": True})
    if ctx.code == "feast":
        volumes.append({"name": "config", "configMap": {"name": ctx.name}})
        mounts.append({"name": "config", "mountPath": "/feature_repo", "readOnly": True})
    if mounts:
        container["volumeMounts"] = mounts
    return volumes


def _pod_spec(ctx: ComponentContext, container: dict) -> dict:
    pod: dict = {"containers": [container]}
    volumes = _volumes(ctx, container)
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


def _deployment(ctx, options, name, role, container, replicas=1) -> dict:
    labels = {**component_labels(ctx), "gpupaas.io/role": role}
    meta = _meta(ctx, name, options)
    meta["labels"] = labels
    spec: dict = {
        "replicas": replicas,
        "selector": {"matchLabels": _selector(ctx, role)},
        "template": {"metadata": {"labels": labels}, "spec": _pod_spec(ctx, container)},
    }
    # One pod at a time: it may hold a ReadWriteOnce volume, and the quota has no headroom
    # for a rolling update's extra pod.
    spec["strategy"] = {"type": "Recreate"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def _config_data(ctx: ComponentContext) -> dict[str, str] | None:
    if ctx.code in ("job-queue", "training-runner"):
        return {"jobrunner.py": JOBRUNNER.read_text()}
    if ctx.code == "feast":
        return {
            "feature_store.yaml": (
                f"project: {ctx.spec.name.replace('-', '_')}\n"
                "registry: /data/registry.db\n"
                "provider: local\n"
                "online_store:\n  type: sqlite\n  path: /data/online.db\n"
                "entity_key_serialization_version: 3\n"
            )
        }
    if ctx.code == "gcs":
        return {"bucket": str(ctx.parameters.get("bucket", ""))}
    return None


def render_component(
    ctx: ComponentContext, secret: str = "", options: m.ManifestOptions | None = None
) -> list[dict]:
    """Every object of one component, in the order to apply them."""
    options = options or m.ManifestOptions()
    objects: list[dict] = []
    if ctx.code in WITH_SECRET:
        key = "cookie-secret" if ctx.code == "oauth2-proxy" else "token"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta(ctx, ctx.name, options),
                "type": "Opaque",
                "stringData": {key: secret or "<generated at deploy time>"},
            }
        )
    data = _config_data(ctx)
    if data is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(ctx, ctx.name, options),
                "data": data,
            }
        )
    if ctx.code == "gcs":
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
    container = _container(ctx)
    objects.append(_deployment(ctx, options, ctx.name, "main", container))
    if ctx.code == "ray" and int(ctx.parameters.get("workers", 0)):
        worker = dict(container, name="ray-worker")
        worker["command"] = ["ray", "start", f"--address={ctx.name}:6379", "--block"]
        worker["args"] = ["--disable-usage-stats"]
        worker.pop("ports", None)
        objects.append(
            _deployment(
                ctx,
                options,
                f"{ctx.name}-worker",
                "worker",
                worker,
                int(ctx.parameters["workers"]),
            )
        )
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
    host = f"{ctx.name}.{namespace}.svc"
    found = []
    for port in ctx.component.ports:
        entry = {"name": f"{ctx.component.name} ({port})", "url": f"http://{host}:{port}"}
        if ctx.code == "jupyterlab":
            entry["token"] = "query"
        found.append(entry)
    return found


# Kinds the services apply, added to the driver's table of API paths.
EXTRA_KINDS = {
    "Deployment": ("/apis/apps/v1", "deployments", True, "deployment"),
    "ConfigMap": ("/api/v1", "configmaps", True, "config map"),
    "Secret": ("/api/v1", "secrets", True, "secret"),
}


class KubernetesServices(ServicesBackend):
    """Applies `render_component` with the Kubernetes driver's API client (server-side)."""

    def __init__(self, infrastructure):
        super().__init__(infrastructure)

        for kind, entry in EXTRA_KINDS.items():
            k.KINDS.setdefault(kind, entry)
        self.k = k
        self.driver = k.KubernetesDriver(infrastructure)

    def deploy(self, ctx: ComponentContext) -> ComponentResult:
        secret = ctx.secret or (secrets.token_urlsafe(24) if ctx.code in WITH_SECRET else "")
        objects = render_component(ctx, secret, self.driver.options)
        self._sync_quota(ctx.spec, exclude=ctx.code, adding=objects)
        for obj in objects:
            self._apply(obj)
        self._sync_quota(ctx.spec)
        result = self.check(ctx)
        result.secret = secret
        return result

    def check(self, ctx: ComponentContext) -> ComponentResult:
        options = self.driver.options
        namespace = m.namespace_for(ctx.spec, options)
        if ctx.code == "gcs":
            return ComponentResult(READY, endpoints=[], detail={"namespace": namespace})
        selector = f"{m.WORKSPACE_LABEL}={ctx.spec.name},{COMPONENT_LABEL}={ctx.code}"
        deployments = self.driver._list("Deployment", namespace, selector)
        pods = self.driver._list("Pod", namespace, selector)
        wanted = sum(int(d["spec"].get("replicas", 1)) for d in deployments)
        waiting = [self.k._waiting_reason(p["metadata"]["name"], p) for p in pods]
        detail = {"namespace": namespace, "pods": [p["metadata"]["name"] for p in pods]}
        if deployments and len(pods) >= wanted and not any(waiting):
            return ComponentResult(READY, endpoints=endpoints(ctx, options), detail=detail)
        failures = [
            f"deployment {d['metadata']['name']} cannot create its pods: {c.get('message', '')}"
            for d in deployments
            for c in (d.get("status") or {}).get("conditions") or []
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
        ]
        reason = next(
            (w for w in [*failures, *waiting] if w),
            "pods are not created yet" if deployments else "deployments are not applied yet",
        )
        return ComponentResult(DEPLOYING, reason=reason, detail=detail)

    def remove(self, ctx: ComponentContext) -> None:
        namespace = m.namespace_for(ctx.spec, self.driver.options)
        selector = f"{m.WORKSPACE_LABEL}={ctx.spec.name},{COMPONENT_LABEL}={ctx.code}"
        self._delete_selected(namespace, selector, ctx.spec, exclude=ctx.code)

    def remove_all(self, spec: WorkspaceSpec) -> None:
        namespace = m.namespace_for(spec, self.driver.options)
        selector = f"{m.WORKSPACE_LABEL}={spec.name},{COMPONENT_LABEL}"
        self._delete_selected(namespace, selector, spec, exclude="*")

    def _delete_selected(self, namespace: str, selector: str, spec, exclude: str) -> None:
        for kind in ("Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim"):
            for obj in self.driver._list(kind, namespace, selector):
                self.driver._delete(kind, obj["metadata"]["name"], namespace)
        self._sync_quota(spec, exclude=exclude)
        if self.driver._list("Pod", namespace, selector):
            raise TransientError("The services' pods are still terminating.")

    def _apply(self, obj: dict) -> None:
        meta = obj["metadata"]
        self.driver._request(
            "PATCH",
            self.k.object_path(obj["kind"], meta["name"], meta.get("namespace", "")),
            body=obj,
            query=[("fieldManager", self.k.FIELD_MANAGER), ("force", "true")],
            content_type=self.k.APPLY_CONTENT_TYPE,
            what=f"{obj['kind']} {meta['name']}",
        )

    def _sync_quota(self, spec: WorkspaceSpec, exclude: str = "", adding=()) -> None:
        """Apply the namespace's quota: the profile's totals plus the stack's share.

        The share counts the stack's Deployments and claims on the cluster, less those of
        component `exclude` ("*": all of them), plus the objects `adding`. Nothing to do in
        shared mode (no quota) or when the quota is gone (the workspace is being deleted).
        """
        options = self.driver.options
        if options.namespace_mode != m.NAMESPACE_MODE:
            return
        namespace = m.namespace_for(spec, options)
        quota = m.quota_manifest(spec, options)
        if self.driver._get("ResourceQuota", quota["metadata"]["name"], namespace) is None:
            return
        present: list[dict] = []
        if exclude != "*":
            selector = f"{m.WORKSPACE_LABEL}={spec.name},{COMPONENT_LABEL}"
            for kind in ("Deployment", "PersistentVolumeClaim"):
                present += [
                    {**o, "kind": kind}  # a list's items need not carry their kind
                    for o in self.driver._list(kind, namespace, selector)
                    if o["metadata"]["labels"].get(COMPONENT_LABEL) != exclude
                ]
        kept = {(o["kind"], o["metadata"]["name"]) for o in adding}
        present = [o for o in present if (o["kind"], o["metadata"]["name"]) not in kept]
        self._apply(m.quota_with(spec, options, stack_usage([*present, *adding])))


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
