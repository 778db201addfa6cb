"""A STAND-IN for the Kubernetes API server, for the driver's tests. Not a Kubernetes.

No API server can be installed on these machines, so this is a small HTTP server (a thread
on 127.0.0.1) implementing only the calls the portal's client (`pools.kube`) makes for the
driver, through the real `kubernetes` client over real HTTP:

- `GET /version` (gitVersion `v<version>.2`);
- server-side apply: `PATCH` with `Content-Type: application/apply-patch+yaml` on
  namespaces, resourcequotas, persistentvolumeclaims, services (core/v1) and statefulsets
  (apps/v1); `GET` of one object, `LIST` with an equality `labelSelector`, `DELETE`;
  `LIST` of nodes and pods;
- the `scale` subresource of statefulsets and deployments: `GET`, and `PATCH` with
  `Content-Type: application/merge-patch+json` of `spec.replicas` (422 unless a whole
  number of at least 0); only the replicas of the object change, as `kubectl scale` does.

With `tls=True` it serves HTTPS with a self-signed certificate for 127.0.0.1 (`ca_pem`), as
a real API server does, so kubeconfigs with `certificate-authority-data` and the in-cluster
loader (which always speaks https) are tested over real TLS.

It rejects what a real API server rejects for those calls, with the same codes and Status
bodies: 401 without the kubeconfig's token; 415 for other PATCH content types (the
merge/strategic/JSON patch types a real server accepts are not implemented here, and say
so); 422 when `fieldManager` is missing; 400 when the body's apiVersion, kind, name or
namespace disagree with the URL; 404 for a missing object or namespace; 422 when
`kubernetes_validate` (strict, the cluster's version) rejects the object, for a bad label,
or for a change to an immutable StatefulSet field; 403 for new objects in a terminating
namespace; 409 for deleting a namespace that is already terminating.

What it simplifies: one field manager owns everything, so an apply stores exactly the
applied object (plus uid, timestamps, resourceVersion and status); no defaulting, no
admission. A StatefulSet immediately gets its pods (Pending, unscheduled) and the claims
of its volume claim templates; deleting one deletes its pods. Namespaces are deleted at
once unless `finalize_namespaces` is False, when they stay "Terminating" until
`finish_terminating()`. Tests drive pods with `set_pods()` and nodes with `add_node()`;
`add_pod()` puts another workload's pod (holding GPUs, say) on a node.

Services stacks (added for `services.backends.kubernetes`): apply, GET, LIST by label and DELETE of
deployments (apps/v1), configmaps and secrets (core/v1), namespaced, under the same checks;
besides, 400 for a Deployment whose selector does not match its template's labels, 422 for
a change to its (immutable) selector, and 409 for an apply without `force=true` to an
object another field manager applied. A Secret's `stringData` is stored as base64 `data`,
as a real server does. A Deployment immediately gets its pods (Pending) named
`<name>-<template hash>-<random>`, as its ReplicaSet's would be; a new template replaces
the old pods at once (every rollout behaves like Recreate); deleting it deletes its pods.

ResourceQuota admission, simplified: a pod a Deployment or a StatefulSet would create is
checked against every quota of its namespace for `pods`, `cpu`/`requests.cpu`,
`limits.cpu`, `memory`/`requests.memory`, `limits.memory` and `requests.<extended>`
(requests default to limits), summed over the namespace's pods that are not Succeeded or
Failed; a quota'd cpu/memory the pod does not specify is refused too. A refused pod is not
created: the Deployment reports it as its ReplicaSet would, a `ReplicaFailure` condition
(reason FailedCreate, the quota message) in its status; a StatefulSet's controller only
emits an event, kept in `events`. Applying a quota retries the namespace's controllers, as
their resync would. A new PersistentVolumeClaim over `persistentvolumeclaims` or
`requests.storage` is refused with 403 at apply, as quota admission does (claims a
StatefulSet's controller makes are not checked). Not kept: the quota's `status.used`, a
Deployment's ready counts, priority-class or storage-class scoped quotas.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
import re
import ssl
import tempfile
import threading
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# plural -> (API prefix, apiVersion, kind, namespaced)
RESOURCES = {
    "namespaces": ("/api/v1", "v1", "Namespace", False),
    "nodes": ("/api/v1", "v1", "Node", False),
    "resourcequotas": ("/api/v1", "v1", "ResourceQuota", True),
    "persistentvolumeclaims": ("/api/v1", "v1", "PersistentVolumeClaim", True),
    "services": ("/api/v1", "v1", "Service", True),
    "pods": ("/api/v1", "v1", "Pod", True),
    "statefulsets": ("/apis/apps/v1", "apps/v1", "StatefulSet", True),
    "networkpolicies": (
        "/apis/networking.k8s.io/v1",
        "networking.k8s.io/v1",
        "NetworkPolicy",
        True,
    ),
}
APPLIABLE = {"namespaces", "resourcequotas", "persistentvolumeclaims", "services", "statefulsets"}
APPLIABLE |= {"networkpolicies"}
# The kinds a services stack adds (services.backends.kubernetes).
RESOURCES.update(
    {
        "deployments": ("/apis/apps/v1", "apps/v1", "Deployment", True),
        "configmaps": ("/api/v1", "v1", "ConfigMap", True),
        "secrets": ("/api/v1", "v1", "Secret", True),
    }
)
APPLIABLE |= {"deployments", "configmaps", "secrets"}
SERVICES_KINDS = {"deployments", "configmaps", "secrets"}
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
FACTORS = {"m": Fraction(1, 1000), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
FACTORS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})
POD_QUOTA_ALIASES = {"cpu": "requests.cpu", "memory": "requests.memory"}
PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/apps/v1|/apis/networking\.k8s\.io/v1)"
    r"(?:/namespaces/(?P<ns>[^/]+))?"
    r"/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<subresource>scale))?)?$"
)
SCALABLE = {"statefulsets", "deployments"}
OTHER_PATCH_TYPES = {
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
}
# What may change in a StatefulSet's spec (apps validation, ValidateStatefulSetUpdate).
STS_MUTABLE = {
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
}
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


def status(code: int, message: str) -> dict:
    reason = REASONS.get(code, "InternalError")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class ApiError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.body = status(code, message)


class StandInApiServer:
    """Start with `start()`; `kubeconfig()` is what an Infrastructure row stores."""

    def __init__(self, version: str = "1.33", token: str = "stand-in-token", tls: bool = False):
        self.version, self.token = version, token
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, namespace, name)
        self.requests: list[tuple[str, str]] = []  # (method, path) for assertions
        self.refuse: int | None = None  # answer every request with this HTTP status
        self.finalize_namespaces = True
        self.lock = threading.RLock()
        self._revision = 0
        self.events: list[dict] = []  # FailedCreate events of StatefulSets
        self._managers: dict[tuple[str, str, str], str] = {}  # the services kinds' appliers
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.ca_pem = b""
        if tls:
            self.ca_pem, context = _tls_context()
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_pem else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> StandInApiServer:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, token: str | None = None) -> str:
        cluster = {"server": self.url}
        if self.ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "stand-in",
                "clusters": [{"name": "stand-in", "cluster": cluster}],
                "users": [{"name": "portal", "user": {"token": token or self.token}}],
                "contexts": [
                    {"name": "stand-in", "context": {"cluster": "stand-in", "user": "portal"}}
                ],
            }
        )

    # --- test controls ------------------------------------------------------------------

    def add_node(self, name: str, labels: dict, allocatable: dict) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": allocatable, "capacity": allocatable},
        }
        self._store("nodes", "", node)

    def add_pod(
        self, namespace: str, name: str, node: str, requests: dict, phase: str = "Running"
    ) -> None:
        """A pod some other workload runs on `node`, holding `requests` (e.g. GPUs)."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {}},
            "spec": {
                "nodeName": node,
                "containers": [
                    {"name": "main", "resources": {"requests": requests, "limits": requests}}
                ],
            },
            "status": {"phase": phase},
        }
        with self.lock:
            self._store("pods", namespace, pod)

    def pods(self, namespace: str | None = None) -> list[dict]:
        return [
            o
            for (p, ns, _), o in sorted(self.objects.items())
            if p == "pods" and namespace in (None, ns)
        ]

    def set_pods(self, state: str, node: str = "gpu-node-1", namespace=None, since=None):
        """Move pods to "ready", "running" (not Ready), "unschedulable" or "image_pull"."""
        with self.lock:
            for pod in self.pods(namespace):
                pod["status"] = _pod_status(state, node, since or _now())
                if state in ("ready", "running", "image_pull"):
                    pod["spec"]["nodeName"] = node

    def finish_terminating(self) -> None:
        with self.lock:
            for (plural, _, name), obj in list(self.objects.items()):
                if plural == "namespaces" and obj["metadata"].get("deletionTimestamp"):
                    self._purge_namespace(name)

    def names(self, plural: str) -> list[str]:
        return sorted(f"{ns}/{n}".lstrip("/") for p, ns, n in self.objects if p == plural)

    # --- the API ------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, headers, body: bytes):
        self.requests.append((method, path))
        if not self.authorized(headers):
            raise ApiError(401, "Unauthorized")
        if self.refuse:
            raise ApiError(self.refuse, f"refused by the test ({self.refuse})")
        if method == "GET" and path == "/version":  # the infrastructure health check's first call
            major, _, minor = self.version.partition(".")
            return 200, {"major": major, "minor": minor, "gitVersion": f"v{self.version}.2"}
        match = PATH.match(path)
        if not match or match["plural"] not in RESOURCES:
            raise ApiError(404, "the server could not find the requested resource")
        prefix, api_version, kind, namespaced = RESOURCES[match["plural"]]
        if match["prefix"] != prefix or (match["ns"] and not namespaced):
            raise ApiError(404, "the server could not find the requested resource")
        plural, ns, name = match["plural"], match["ns"] or "", match["name"]
        if match["subresource"] and plural not in SCALABLE:
            raise ApiError(404, "the server could not find the requested resource")
        with self.lock:
            if match["subresource"]:
                return 200, self._scale(method, plural, ns, name, headers, body)
            if method == "GET" and name:
                return 200, self._get(plural, ns, name)
            if method == "GET":
                return 200, self._list(plural, ns, api_version, kind, query)
            if method == "PATCH" and name:
                return self._apply(plural, ns, name, query, headers, body)
            if method == "DELETE" and name:
                return 200, self._delete(plural, ns, name)
        raise ApiError(405, f"{method} {path} is not supported")

    def authorized(self, headers) -> bool:
        """A bearer token, its scheme case-insensitive as the API server's authenticator reads
        it (the in-cluster loader sends "bearer")."""
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and token == self.token

    def _get(self, plural: str, ns: str, name: str) -> dict:
        found = self.objects.get((plural, ns, name))
        if found is None:
            raise ApiError(404, f'{plural} "{name}" not found')
        return found

    def _list(self, plural, ns, api_version, kind, query) -> dict:
        if "fieldSelector" in query:
            raise ApiError(400, "the stand-in does not implement fieldSelector")
        wanted = _parse_selector(query.get("labelSelector", [""])[0])
        items = [
            obj
            for (p, n, _), obj in sorted(self.objects.items())
            if p == plural and ns in ("", n) and _matches(obj, wanted)
        ]
        return {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            "items": items,
            "metadata": {"resourceVersion": str(self._revision)},
        }

    def _apply(self, plural, ns, name, query, headers, body: bytes):
        content_type = headers.get("Content-Type", "").split(";")[0].strip()
        if content_type in OTHER_PATCH_TYPES:
            raise ApiError(415, "the stand-in implements only apply")
        if content_type != "application/apply-patch+yaml":
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media "
                f"types include: {', '.join(sorted(OTHER_PATCH_TYPES))}, "
                f"application/apply-patch+yaml",
            )
        if not query.get("fieldManager", [""])[0]:
            raise ApiError(
                422,
                'PatchOptions.meta.k8s.io "" is invalid: '
                "fieldManager: Required value: is required for apply patch",
            )
        if plural not in APPLIABLE:
            raise ApiError(405, f"the stand-in does not apply {plural}")
        obj = yaml.safe_load(body)
        _, api_version, kind, namespaced = RESOURCES[plural]
        if not isinstance(obj, dict):
            raise ApiError(400, "the body is not an object")
        if (obj.get("apiVersion"), obj.get("kind")) != (api_version, kind):
            raise ApiError(
                400,
                f"the API version or kind in the data "
                f"({obj.get('apiVersion')}, {obj.get('kind')}) does not match "
                f"the expected ({api_version}, {kind})",
            )
        meta = obj.get("metadata") or {}
        if meta.get("name") != name:
            raise ApiError(
                400,
                f"the name of the object ({meta.get('name')}) "
                f"does not match the name on the URL ({name})",
            )
        if namespaced and meta.get("namespace", ns) != ns:
            raise ApiError(
                400,
                "the namespace of the provided object does "
                "not match the namespace sent on the request",
            )
        title = f'{kind}{"" if api_version == "v1" else ".apps"} "{name}" is invalid'
        try:
            kubernetes_validate.validate(obj, f"{self.version}.0", strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            raise ApiError(422, f"{title}: {where}: {error.message}") from None
        for key, value in (meta.get("labels") or {}).items():
            if not LABEL_KEY.match(key) or not LABEL_VALUE.match(str(value)):
                raise ApiError(
                    422,
                    f"{title}: metadata.labels: Invalid value: "
                    f"{value!r}: a valid label must be 63 characters or less "
                    "and begin and end with an alphanumeric character",
                )
        if namespaced:
            space = self.objects.get(("namespaces", "", ns))
            if space is None:
                raise ApiError(404, f'namespaces "{ns}" not found')
        existing = self.objects.get((plural, ns, name))
        if existing is None and namespaced and space["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                f"unable to create new content in namespace {ns} because it is being terminated",
            )
        if existing and plural == "statefulsets":
            before = {k: v for k, v in existing["spec"].items() if k not in STS_MUTABLE}
            after = {k: v for k, v in obj["spec"].items() if k not in STS_MUTABLE}
            if before != after:
                raise ApiError(
                    422,
                    f"{title}: spec: Forbidden: updates to "
                    "statefulset spec for fields other than 'replicas', "
                    "'ordinals', 'template', 'updateStrategy', "
                    "'persistentVolumeClaimRetentionPolicy' and "
                    "'minReadySeconds' are forbidden",
                )
        if plural in SERVICES_KINDS or plural == "persistentvolumeclaims":
            obj = self._admit_services_object(plural, ns, name, obj, existing, query, title)
        stored = self._store(plural, ns, obj, existing)
        if plural == "statefulsets":
            self._reconcile_statefulset(stored)
        if plural == "deployments":
            self._reconcile_deployment(stored)
        if plural == "resourcequotas":
            self._resync_controllers(ns)
        return (200 if existing else 201), stored

    def _scale(self, method: str, plural: str, ns: str, name: str, headers, body: bytes) -> dict:
        """The scale subresource: read, or merge-patch `spec.replicas` (nothing else)."""
        obj = self._get(plural, ns, name)
        if method == "PATCH":
            content_type = headers.get("Content-Type", "").split(";")[0].strip()
            if content_type != "application/merge-patch+json":
                raise ApiError(415, "the stand-in implements only merge patches of scale")
            patch = json.loads(body or b"{}")
            if not isinstance(patch, dict):
                raise ApiError(400, "the merge patch is not an object")
            replicas = (patch.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise ApiError(
                    422,
                    f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                    f"{replicas!r}: must be greater than or equal to 0",
                )
            self._revision += 1
            obj["spec"]["replicas"] = replicas
            obj["metadata"]["resourceVersion"] = str(self._revision)
            obj["metadata"]["generation"] += 1
            if plural == "statefulsets":
                self._reconcile_statefulset(obj)
            else:
                self._reconcile_deployment(obj)
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid")},
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": obj["spec"].get("replicas", 1)},
        }

    def _store(self, plural: str, ns: str, obj: dict, existing: dict | None = None) -> dict:
        self._revision += 1
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        old = (existing or {}).get("metadata", {})
        if ns:
            meta["namespace"] = ns
        meta["uid"] = old.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = old.get("creationTimestamp") or _now()
        meta["resourceVersion"] = str(self._revision)
        meta["generation"] = old.get("generation", 0) + 1
        default_status = {"phase": "Active"} if plural == "namespaces" else {}
        obj["status"] = (existing or {}).get("status", obj.get("status", default_status))
        self.objects[(plural, ns, meta["name"])] = obj
        return obj

    def _reconcile_statefulset(self, sts: dict) -> None:
        """What the StatefulSet controller would do next: make pods and their claims."""
        name, ns, spec = sts["metadata"]["name"], sts["metadata"]["namespace"], sts["spec"]
        for ordinal in range(spec.get("replicas", 1)):
            for template in spec.get("volumeClaimTemplates", []):
                claim = f"{template['metadata']['name']}-{name}-{ordinal}"
                if ("persistentvolumeclaims", ns, claim) not in self.objects:
                    meta = {**template["metadata"], "name": claim}
                    body = {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": meta,
                        "spec": template["spec"],
                    }
                    self._store("persistentvolumeclaims", ns, body)
            pod_name = f"{name}-{ordinal}"
            if ("pods", ns, pod_name) not in self.objects:
                labels = {
                    **spec["template"]["metadata"].get("labels", {}),
                    "statefulset.kubernetes.io/pod-name": pod_name,
                }
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod_name, "labels": labels},
                    "spec": _defaulted(copy.deepcopy(spec["template"]["spec"])),
                    "status": {"phase": "Pending"},
                }
                refused = self._quota_refusal(ns, pod)  # quota admission (services stacks)
                if refused:
                    self._failed_create_event(sts, refused)
                else:
                    self._store("pods", ns, pod)
        for key in [k for k in self.objects if k[0] == "pods" and k[1] == ns]:
            head, _, ordinal = key[2].rpartition("-")
            if head == name and int(ordinal) >= spec.get("replicas", 1):
                del self.objects[key]

    def _delete(self, plural: str, ns: str, name: str) -> dict:
        obj = self._get(plural, ns, name)
        if plural == "namespaces":
            if obj["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    409,
                    f"Operation cannot be fulfilled on namespaces "
                    f'"{name}": The system is ensuring all content is removed from '
                    "this namespace.  Upon completion, this namespace will "
                    "automatically be purged by the system.",
                )
            obj["metadata"]["deletionTimestamp"] = _now()
            obj["status"] = {"phase": "Terminating"}
            if self.finalize_namespaces:
                self._purge_namespace(name)
            return obj
        del self.objects[(plural, ns, name)]
        if plural == "statefulsets":  # the garbage collector removes the owned pods
            for key in [k for k in self.objects if k[0] == "pods" and k[1] == ns]:
                if key[2].rpartition("-")[0] == name:
                    del self.objects[key]
        if plural == "deployments":  # the garbage collector removes its ReplicaSet's pods
            for key in self._deployment_pods(ns, name):
                del self.objects[key]
        self._managers.pop((plural, ns, name), None)
        done = {**status(200, ""), "status": "Success", "reason": ""}
        return {**done, "details": {"name": name, "kind": plural}}

    # --- services stacks: deployments, config maps, secrets; quota admission ------------

    def _admit_services_object(self, plural, ns, name, obj, existing, query, title) -> dict:
        """The checks a real server makes on the services' kinds; returns what to store."""
        manager = query.get("fieldManager", [""])[0]
        key = (plural, ns, name)
        if plural == "persistentvolumeclaims":
            if existing is None:
                refused = self._claim_refusal(ns, obj)
                if refused:
                    raise ApiError(403, refused)
            return obj
        owner = self._managers.get(key)
        if existing and owner and owner != manager and query.get("force", [""])[0] != "true":
            raise ApiError(409, f'Apply failed with 1 conflict: conflict with "{owner}"')
        if plural == "deployments":
            spec = obj.get("spec") or {}
            wanted = (spec.get("selector") or {}).get("matchLabels") or {}
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not wanted or any(labels.get(k) != v for k, v in wanted.items()):
                raise ApiError(
                    422,
                    f"{title}: spec.template.metadata.labels: Invalid value: "
                    f"{labels!r}: `selector` does not match template `labels`",
                )
            if existing and existing["spec"].get("selector") != spec.get("selector"):
                raise ApiError(422, f"{title}: spec.selector: Invalid value: field is immutable")
        if plural == "secrets" and "stringData" in obj:
            obj = copy.deepcopy(obj)
            data = obj.setdefault("data", {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
        self._managers[key] = manager
        return obj

    def _deployment_pods(self, ns: str, name: str) -> list[tuple[str, str, str]]:
        """The keys of the pods the Deployment's ReplicaSets own."""
        found = []
        for key, pod in self.objects.items():
            if key[0] != "pods" or key[1] != ns:
                continue
            for ref in pod["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "ReplicaSet" and ref["name"].rpartition("-")[0] == name:
                    found.append(key)
        return found

    def _reconcile_deployment(self, deployment: dict) -> None:
        """What the Deployment and ReplicaSet controllers would do next (as Recreate)."""
        meta, spec = deployment["metadata"], deployment["spec"]
        name, ns = meta["name"], meta["namespace"]
        template = spec["template"]
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
        template_hash = digest[:10]
        replica_set = f"{name}-{template_hash}"
        current = []
        for key in self._deployment_pods(ns, name):
            refs = self.objects[key]["metadata"]["ownerReferences"]
            if refs[0]["name"] == replica_set:
                current.append(key)
            else:
                del self.objects[key]  # an old template's pod
        replicas = spec.get("replicas", 1)
        for key in current[replicas:]:
            del self.objects[key]
        current = current[:replicas]
        failure = ""
        while len(current) < replicas:
            pod_name = f"{replica_set}-{uuid.uuid4().hex[:5]}"
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "labels": {
                        **template["metadata"]["labels"],
                        "pod-template-hash": template_hash,
                    },
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": replica_set,
                            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ns}/{replica_set}")),
                            "controller": True,
                        }
                    ],
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": {"phase": "Pending"},
            }
            failure = self._quota_refusal(ns, pod)
            if failure:
                break
            self._store("pods", ns, pod)
            current.append(("pods", ns, pod_name))
        conditions = []
        if failure:
            conditions.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": failure,
                    "lastTransitionTime": _now(),
                }
            )
        deployment["status"] = {
            "observedGeneration": meta["generation"],
            "replicas": len(current),
            "conditions": conditions,
        }

    def _resync_controllers(self, ns: str) -> None:
        """Controllers retry the pods a quota refused; do it now that a quota changed."""
        for (plural, n, _), obj in list(self.objects.items()):
            if n == ns and plural == "deployments":
                self._reconcile_deployment(obj)
            elif n == ns and plural == "statefulsets":
                self._reconcile_statefulset(obj)

    def _failed_create_event(self, owner: dict, message: str) -> None:
        self.events.append(
            {
                "involvedObject": {
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "namespace": owner["metadata"]["namespace"],
                },
                "type": "Warning",
                "reason": "FailedCreate",
                "message": message,
            }
        )

    def _quotas(self, ns: str) -> list[dict]:
        return [
            o for (p, n, _), o in sorted(self.objects.items()) if p == "resourcequotas" and n == ns
        ]

    def _quota_refusal(self, ns: str, pod: dict) -> str:
        """Why quota admission refuses the pod ("" when it admits it)."""
        name = pod["metadata"]["name"]
        wanted = _pod_usage(pod["spec"])
        used: dict[str, Fraction] = {}
        for (p, n, _), other in self.objects.items():
            if (
                p == "pods"
                and n == ns
                and other.get("status", {}).get("phase")
                not in (
                    "Succeeded",
                    "Failed",
                )
            ):
                for key, amount in _pod_usage(other["spec"]).items():
                    used[key] = used.get(key, Fraction(0)) + amount
        for quota in self._quotas(ns):
            hard = {
                POD_QUOTA_ALIASES.get(k, k): _quantity(v)
                for k, v in quota["spec"].get("hard", {}).items()
                if k == "pods" or k in POD_QUOTA_ALIASES or k.startswith(("requests.", "limits."))
            }
            hard.pop("requests.storage", None)
            missing = [
                k
                for k in hard
                if k in ("requests.cpu", "limits.cpu", "requests.memory", "limits.memory")
                and not _every_container_sets(pod["spec"], k)
            ]
            qname = quota["metadata"]["name"]
            if missing:
                return (
                    f'pods "{name}" is forbidden: failed quota: {qname}: must specify '
                    + ",".join(sorted(missing))
                )
            over = sorted(k for k in hard if used.get(k, 0) + wanted.get(k, 0) > hard[k])
            if over:
                return _exceeded("pods", name, qname, over, wanted, used, hard)
        return ""

    def _claim_refusal(self, ns: str, claim: dict) -> str:
        storage = claim["spec"].get("resources", {}).get("requests", {}).get("storage", "0")
        wanted = {"persistentvolumeclaims": Fraction(1), "requests.storage": _quantity(storage)}
        used = {"persistentvolumeclaims": Fraction(0), "requests.storage": Fraction(0)}
        for (p, n, _), other in self.objects.items():
            if p == "persistentvolumeclaims" and n == ns:
                requests = other["spec"].get("resources", {}).get("requests", {})
                used["persistentvolumeclaims"] += 1
                used["requests.storage"] += _quantity(requests.get("storage", "0"))
        for quota in self._quotas(ns):
            hard = {
                k: _quantity(v) for k, v in quota["spec"].get("hard", {}).items() if k in wanted
            }
            over = sorted(k for k in hard if used[k] + wanted[k] > hard[k])
            if over:
                name = claim["metadata"]["name"]
                qname = quota["metadata"]["name"]
                return _exceeded("persistentvolumeclaims", name, qname, over, wanted, used, hard)
        return ""

    def _purge_namespace(self, name: str) -> None:
        for key in [k for k in self.objects if k[1] == name or k == ("namespaces", "", name)]:
            del self.objects[key]


def _tls_context() -> tuple[bytes, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (its PEM is the CA) and a server context."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.NamedTemporaryFile() as cert_file, tempfile.NamedTemporaryFile() as key_file:
        cert_file.write(pem)
        key_file.write(key_pem)
        cert_file.flush()
        key_file.flush()
        context.load_cert_chain(cert_file.name, key_file.name)
    return pem, context


def _defaulted(pod_spec: dict) -> dict:
    """A pod's spec with the defaults the API server fills in that the portal reads back
    (a probe's thresholds)."""
    for container in pod_spec.get("containers", []):
        probe = container.get("readinessProbe")
        if probe is not None:
            probe.setdefault("successThreshold", 1)
            probe.setdefault("initialDelaySeconds", 0)
    return pod_spec


def _pod_status(state: str, node: str, since: str) -> dict:
    if state == "unschedulable":
        message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        return {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                }
            ],
        }
    ready = "True" if state == "ready" else "False"
    conditions = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": ready}]
    if state == "image_pull":
        waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}
        return {
            "phase": "Pending",
            "conditions": conditions,
            "startTime": since,
            "containerStatuses": [
                {"name": "workspace", "ready": False, "state": {"waiting": waiting}}
            ],
        }
    running = {"running": {"startedAt": since}}
    container = {"name": "workspace", "ready": state == "ready", "state": running}
    return {
        "phase": "Running",
        "conditions": conditions,
        "startTime": since,
        "containerStatuses": [container],
    }


def _quantity(value) -> Fraction:
    found = QUANTITY.match(str(value).strip())
    if not found:
        raise ApiError(422, f"quantities must match the regular expression: {value!r}")
    return Fraction(found[1]) * FACTORS.get(found[2], 1)


def _pod_usage(pod_spec: dict) -> dict[str, Fraction]:
    """What one pod counts against a quota (requests default to limits)."""
    usage = {"pods": Fraction(1)}
    for container in pod_spec.get("containers", []):
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = {**limits, **(resources.get("requests") or {})}
        for kind, amounts in (("requests", requests), ("limits", limits)):
            for resource, value in amounts.items():
                key = f"{kind}.{resource}"
                usage[key] = usage.get(key, Fraction(0)) + _quantity(value)
    return usage


def _every_container_sets(pod_spec: dict, key: str) -> bool:
    kind, _, resource = key.partition(".")
    for container in pod_spec.get("containers", []):
        resources = container.get("resources") or {}
        amounts = {**(resources.get("limits") or {})}
        if kind == "requests":
            amounts.update(resources.get("requests") or {})
        if resource not in amounts:
            return False
    return True


def _exceeded(plural, name, quota, over, wanted, used, hard) -> str:
    def show(amounts):
        return ",".join(f"{k}={_show(amounts.get(k, 0))}" for k in over)

    return (
        f'{plural} "{name}" is forbidden: exceeded quota: {quota}, '
        f"requested: {show(wanted)}, used: {show(used)}, limited: {show(hard)}"
    )


def _show(amount: Fraction) -> str:
    if amount.denominator != 1:
        return f"{int(amount * 1000)}m"
    if amount and amount % 2**30 == 0:
        return f"{amount // 2**30}Gi"
    return str(amount)


def _parse_selector(selector: str) -> list[tuple[str, str, str | None]]:
    terms = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if " in " in term or " notin " in term or "(" in term:
            raise ApiError(400, "the stand-in implements equality selectors only")
        for op in ("!=", "==", "="):
            if op in term:
                key, value = term.split(op, 1)
                terms.append((key.strip(), op, value.strip()))
                break
        else:
            terms.append((term.lstrip("!"), "!" if term.startswith("!") else "exists", None))
    return terms


def _matches(obj: dict, terms) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for key, op, value in terms:
        if (op in ("=", "==") and labels.get(key) != value) or (
            op == "!=" and labels.get(key) == value
        ):
            return False
        if (op == "exists" and key not in labels) or (op == "!" and key in labels):
            return False
    return True


def _handler_for(server: StandInApiServer):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                code, payload = server.handle(
                    self.command, url.path, parse_qs(url.query), self.headers, body
                )
            except ApiError as error:
                code, payload = error.body["code"], error.body
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _serve

        def log_message(self, *args):  # keep test output quiet
            pass

    return Handler
