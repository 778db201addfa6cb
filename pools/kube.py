"""The portal's one Kubernetes client: the driver, the services backend and MIG apply use it.

    from pools import kube
    client = kube.client_for(infrastructure)          # kubeconfig or in-cluster
    created = client.apply(obj)                       # server-side apply, force
    client.apply(obj, field_manager="gpu-paas-portal-mig")
    obj = client.get("StatefulSet", "ws-1-g0", "ws-1")   # None when absent
    pods = client.list("Pod", "ws-1", "gpupaas.io/workspace=ws-1")
    gone = client.delete("Namespace", "ws-1")         # False when already absent
    client.apply_labels("Node", "gpu-1", {"nvidia.com/mig.config": "all-1g.5gb"},
                        field_manager="gpu-paas-portal-mig")
    kube.register_kind("Job", "batch/v1", "jobs", namespaced=True, words="job")

Loading (`client_for`): an infrastructure with `in_cluster` set uses the portal pod's
service account (the official client's in-cluster loader, reading
`profiles.kubeconfig.SERVICE_ACCOUNT_DIR` and KUBERNETES_SERVICE_HOST/PORT); otherwise its
kubeconfig, which is checked again here with `profiles.kubeconfig.parse_kubeconfig` before
the official client sees it, so a stored kubeconfig with an `exec` user, an auth provider
or file paths never runs or reads anything. The official client writes the kubeconfig's
certificate, key and CA data to files for TLS; they go to a directory of the portal's data
directory that only the portal may open and no sandbox sees (`KEY_FILES_DIR`), never to the
host's /tmp, which local workspaces share, and the client removes them when the process
exits.

Requests go through the official client's `DynamicClient` (its server-side apply, paths,
query parameters and error classes) over the official `ApiClient`. Kinds are resolved from
this module's registry (`register_kind`, `kind`) rather than by API discovery: the portal
talks to a fixed set of core kinds, and discovery would cost several round trips per task
and write a cache file under /tmp on every host.

Errors, one mapping for every caller:
- 401/403 → PermanentError: the credentials were refused, with the API's reason (a 403
  for "exceeded quota" says the namespace's quota has no room);
- 404 → absent: `get` returns None, `list` returns [], `delete` returns False; a write
  whose namespace is missing raises TransientError ("did not find");
- 3xx → PermanentError: redirects are never followed (`NO_REDIRECTS`), so no request, body
  or client certificate goes to an address the kubeconfig does not name;
- 409, 429, 5xx, timeouts, refused connections and TLS failures → TransientError;
- any other status (400, 415, 422, ...) → PermanentError with the API's message;
- any other exception (e.g. http.client refusing a header) → PermanentError naming only its
  class: its text may quote the request, the Authorization header included.
`DriverError.detail` carries "HTTP <code>: <message>" for administrators.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import urllib3
from django.conf import settings
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config_dict
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

from pools.drivers.base import DriverError, PermanentError, TransientError
from profiles import kubeconfig

FIELD_MANAGER = "gpu-paas-portal"
KEY_FILES_DIR = "kubernetes"  # under settings.DATA_DIR
REQUEST_TIMEOUT = (5, 30)  # seconds: connect, read
# urllib3's default retries (3), but a redirect comes back as the answer, never followed.
NO_REDIRECTS = urllib3.Retry(3, redirect=0, raise_on_redirect=False)
# A DNS-1123 subdomain: what a Kubernetes object or namespace name can be.
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


# --- kinds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API, and how progress messages name it."""

    name: str  # "StatefulSet"
    api_version: str  # "apps/v1", "v1"
    plural: str  # "statefulsets"
    namespaced: bool
    words: str  # "stateful set"

    def resource(self) -> Resource:
        group, _, version = self.api_version.rpartition("/")
        return Resource(
            prefix="apis" if group else "api",
            group=group,
            api_version=version,
            kind=self.name,
            namespaced=self.namespaced,
            name=self.plural,
        )

    def path(self, name: str = "", namespace: str = "") -> str:
        return self.resource().path(name=name or None, namespace=namespace or None)


_KINDS: dict[str, Kind] = {}


def register_kind(
    name: str, api_version: str, plural: str, *, namespaced: bool, words: str = ""
) -> Kind:
    """Teach the client a kind. Registering the same kind again is harmless; registering
    it differently is a programming error (ValueError)."""
    entry = Kind(name, api_version, plural, namespaced, words or name.lower())
    known = _KINDS.setdefault(name, entry)
    if known != entry:
        raise ValueError(f"kind {name} is already registered as {known}")
    return known


def kind(name: str) -> Kind:
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(f"unknown kind {name!r}: register it with register_kind()") from None


def object_path(kind_name: str, name: str = "", namespace: str = "") -> str:
    """The API path of an object (or of the collection when `name` is empty)."""
    return kind(kind_name).path(name, namespace)


for _entry in (
    ("Namespace", "v1", "namespaces", False, "namespace"),
    ("Node", "v1", "nodes", False, "node"),
    ("Pod", "v1", "pods", True, "pod"),
    ("Service", "v1", "services", True, "service"),
    ("PersistentVolumeClaim", "v1", "persistentvolumeclaims", True, "volume claim"),
    ("ResourceQuota", "v1", "resourcequotas", True, "resource quota"),
    ("ConfigMap", "v1", "configmaps", True, "config map"),
    ("Secret", "v1", "secrets", True, "secret"),
    ("StatefulSet", "apps/v1", "statefulsets", True, "stateful set"),
    ("Deployment", "apps/v1", "deployments", True, "deployment"),
    ("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", True, "network policy"),
):
    register_kind(*_entry[:3], namespaced=_entry[3], words=_entry[4])


def labels_patch(kind_name: str, name: str, labels: dict[str, str], namespace: str = "") -> dict:
    """The apply body that sets only `labels` on an object (other fields stay)."""
    entry = kind(kind_name)
    metadata = {"name": name, "labels": dict(labels)}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": entry.api_version, "kind": entry.name, "metadata": metadata}


# --- loading -----------------------------------------------------------------------------


def client_for(infrastructure) -> KubeClient:
    """The client for an existing-Kubernetes infrastructure; PermanentError when it has
    no usable credentials (the reason says which and what to do)."""
    if getattr(infrastructure, "in_cluster", False):
        return KubeClient(_in_cluster_api(), source="portal's service account")
    text = infrastructure.kubeconfig
    if not text:
        raise PermanentError(f"{infrastructure} has no kubeconfig.")
    try:
        config = kubeconfig.parse_kubeconfig(text)
    except kubeconfig.KubeconfigError as error:
        raise PermanentError(
            f"The kubeconfig of {infrastructure} cannot be used: {error}", str(error)
        ) from None
    try:
        api = new_client_from_config_dict(
            config,
            persist_config=False,
            temp_file_path=_key_files_directory(),
            client_configuration=_configuration(),
        )
    except ConfigException as error:
        raise PermanentError(
            f"The kubeconfig of {infrastructure} cannot be used.", str(error)
        ) from None
    except (KeyError, TypeError, ValueError) as error:  # their text may quote the kubeconfig
        raise PermanentError(
            f"The kubeconfig of {infrastructure} cannot be used ({type(error).__name__})."
        ) from None
    return KubeClient(api, source="kubeconfig")


def _configuration() -> Configuration:
    """The official client's settings, with redirects never followed: the kubeconfig names
    the one address the portal talks to, and urllib3 would otherwise send the request, its
    body and client certificate included, wherever a 3xx points and believe the answer."""
    configuration = Configuration()
    configuration.retries = NO_REDIRECTS
    return configuration


def _key_files_directory() -> str:
    """Where the official client may write a kubeconfig's decoded certificate, key and CA.

    It keeps one file per distinct content for the whole process and removes them at exit;
    a client's connections read them again each time they open, so no file is removed when
    one client is done with it.
    """
    directory = Path(settings.DATA_DIR) / KEY_FILES_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # made before with a wider mode, or under a looser umask
    return str(directory)


def _in_cluster_api() -> ApiClient:
    problem = kubeconfig.in_cluster_problem()
    if problem:
        raise PermanentError(problem)
    configuration = _configuration()
    directory = kubeconfig.SERVICE_ACCOUNT_DIR
    try:
        InClusterConfigLoader(
            token_filename=str(directory / "token"), cert_filename=str(directory / "ca.crt")
        ).load_and_set(configuration)
    except ConfigException as error:
        raise PermanentError("The portal's service account cannot be used.", str(error)) from None
    return ApiClient(configuration)


class _NoDiscovery:
    """Stands in for the DynamicClient's discoverer: kinds come from `register_kind`."""

    version: dict = {}

    def __init__(self, client, cache_file):
        self.client = client


# --- the client --------------------------------------------------------------------------


class KubeClient:
    """Calls on one cluster, with the module's one error mapping (see the docstring)."""

    def __init__(self, api: ApiClient, source: str = "kubeconfig"):
        self.api = api
        self.source = source  # whose credentials: "kubeconfig" or "portal's service account"
        self.dynamic = DynamicClient(api, discoverer=_NoDiscovery)

    @property
    def host(self) -> str:
        return self.api.configuration.host

    def apply(self, obj: dict, *, field_manager: str = FIELD_MANAGER) -> bool:
        """Server-side apply `obj` (forcing conflicts); True when it was created."""
        entry, meta = kind(obj["kind"]), obj["metadata"]
        name, namespace = meta["name"], meta.get("namespace", "")
        what = f"{entry.name} {name}"
        _check_name(name, namespace, what)
        response = self._call(
            what,
            self.dynamic.server_side_apply,
            entry.resource(),
            body=obj,
            name=name,
            namespace=namespace or None,
            field_manager=field_manager,
            force_conflicts=True,
            absent_ok=False,
        )
        return response.status == 201

    def apply_labels(
        self,
        kind_name: str,
        name: str,
        labels: dict[str, str],
        *,
        namespace: str = "",
        field_manager: str = FIELD_MANAGER,
    ) -> bool:
        """Apply only `labels` on an existing object under `field_manager` (the labels that
        manager applied before and left out now are removed; others' labels stay)."""
        return self.apply(
            labels_patch(kind_name, name, labels, namespace), field_manager=field_manager
        )

    def get(self, kind_name: str, name: str, namespace: str = "") -> dict | None:
        """One object, or None when it does not exist."""
        entry = kind(kind_name)
        if not _is_name(name) or (namespace and not _is_name(namespace)):
            return None  # no object can have that name
        response = self._call(
            f"{entry.name} {name}",
            self.dynamic.get,
            entry.resource(),
            name=name,
            namespace=namespace or None,
        )
        return None if response is None else _body(response)

    def list(self, kind_name: str, namespace: str = "", selector: str = "") -> list[dict]:
        """The objects of a kind (in `namespace`, or everywhere when empty) matching the
        label `selector`; [] when the collection does not exist."""
        entry = kind(kind_name)
        if namespace and not _is_name(namespace):
            return []
        response = self._call(
            f"the {entry.plural}",
            self.dynamic.get,
            entry.resource(),
            namespace=namespace or None,
            label_selector=selector or None,
        )
        return [] if response is None else _body(response).get("items") or []

    def delete(self, kind_name: str, name: str, namespace: str = "") -> bool:
        """Delete one object (its dependents in the background); False when already gone."""
        entry = kind(kind_name)
        if not _is_name(name) or (namespace and not _is_name(namespace)):
            return False
        if entry.namespaced and not namespace:
            raise ValueError(f"deleting a {entry.name} needs its namespace")
        response = self._call(
            f"{entry.name} {name}",
            self.dynamic.delete,
            entry.resource(),
            name=name,
            namespace=namespace or None,
            propagation_policy="Background",
        )
        return response is not None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str | None = None,
        what: str = "",
    ) -> tuple[int, dict | None]:
        """A raw call with the same error mapping: (status, body), or (404, None)."""
        response = self._call(
            what or f"{method} {path}",
            self.dynamic.request,
            method,
            path,
            body=body,
            query_params=list(query or []),
            content_type=content_type,
        )
        return (404, None) if response is None else (response.status, _body(response))

    # --- the one error mapping -----------------------------------------------------------

    def _call(self, what: str, method, *args, absent_ok: bool = True, **kwargs):
        """Run one dynamic-client call; the raw response, or None on 404 if `absent_ok`."""
        try:
            return method(*args, serialize=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as error:
            if not error.status:  # raised before any status came back (e.g. TLS)
                raise TransientError(
                    f"Cannot talk to the Kubernetes API at {self.host}.", str(error)
                ) from error
            if error.status == 404 and absent_ok:
                return None
            raise self._failure(error.status, error.body, what) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise TransientError(
                f"Cannot reach the Kubernetes API at {self.host}.", str(error)
            ) from error
        except Exception as error:
            # Its text may quote the request: http.client's "Invalid header value
            # b'Bearer <token>...'" does. So neither it nor its chain goes on.
            raise PermanentError(
                f"The Kubernetes client could not send the request for {what} "
                f"({type(error).__name__}).",
                "Its message is left out: it may quote the credentials. Check the "
                "kubeconfig's token and server.",
            ) from None

    def _failure(self, code: int, data, what: str) -> DriverError:
        """The error for a status other than 2xx (and 404 where absence is an answer)."""
        message = _message(data)
        detail = f"HTTP {code}: {message}"
        if 300 <= code < 400:
            return PermanentError(
                f"The Kubernetes API at {self.host} redirected the request for {what} "
                f"(HTTP {code}). The portal follows no redirect: it talks only to the server "
                "its credentials name. Give the API server's own address.",
                detail,
            )
        if code == 403 and "exceeded quota" in message:
            # Admission refused by the namespace's ResourceQuota, not an authorization failure.
            return PermanentError(
                f"The namespace's quota has no room for {what}: {message}", detail
            )
        if code in (401, 403):
            return PermanentError(
                f"The {self.source}'s credentials were refused by the cluster for {what}: "
                f"{message}",
                detail,
            )
        if code in (409, 429) or code >= 500:
            return TransientError(f"The Kubernetes API is busy ({code}) with {what}.", detail)
        if code == 404:  # a write whose namespace (or API) is missing; it may appear
            return TransientError(f"The Kubernetes API did not find {what}.", detail)
        return PermanentError(f"The cluster rejected {what}: {message}", detail)


def _message(data) -> str:
    """The API's message, shortened: the body is the server's to fill (a proxy's page, a
    webhook's text), and the message ends up in a health detail and the log."""
    if isinstance(data, bytes):
        data = data.decode(errors="replace")
    try:
        found = json.loads(data or "{}").get("message")
    except (ValueError, AttributeError):
        found = None
    return (str(found) if found else str(data or ""))[:500]


def _body(response) -> dict:
    data = json.loads(response.data or b"{}")
    return data if isinstance(data, dict) else {}


def _is_name(value: str) -> bool:
    return isinstance(value, str) and bool(NAME.match(value))


def _check_name(name: str, namespace: str, what: str) -> None:
    for value in (name, namespace) if namespace else (name,):
        if not _is_name(value):
            raise PermanentError(f"{what!r} cannot be applied: {value!r} is not a Kubernetes name.")
