"""What the portal accepts as the credentials of an existing Kubernetes cluster.

A kubeconfig is admin input, and the `kubernetes` client acts on what it says when it is
loaded: an `exec` user runs a command on the portal's host, an `auth-provider` runs a
refresh, `tokenFile` and the file paths (`client-certificate`, `client-key`,
`certificate-authority`) read files of the portal's host. So only inline credentials are
accepted: `token`, `client-certificate-data` + `client-key-data`, and
`certificate-authority-data`. `parse_kubeconfig` is the one rule: the infrastructure form
runs it when a kubeconfig is saved, and `pools.kube` runs it again on every load, so a
hostile kubeconfig stored by other means never reaches the client either.

In-cluster mode uses the portal pod's service account instead: `in_cluster_problem` says
why it cannot be used here ("" when it can).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from urllib.parse import urlsplit

import yaml

# Where Kubernetes mounts a pod's service account (token, ca.crt, namespace), and the
# environment it sets in every pod.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"
SERVICE_PORT_ENV = "KUBERNETES_SERVICE_PORT"

USER_KEYS = {"token", "client-certificate-data", "client-key-data"}
CLUSTER_KEYS = {
    "server",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
    "tls-server-name",
    "extensions",
}
DATA_KEYS = {"client-certificate-data", "client-key-data", "certificate-authority-data"}
PASTE_INSTEAD = {
    "exec": "it runs a command on the portal's host. Paste a service account token "
    "(`token:`) or a client certificate and key (`client-certificate-data:`, "
    "`client-key-data:`) instead",
    "auth-provider": "it runs a token refresh on the portal's host. Paste a service "
    "account token (`token:`) instead",
    "tokenFile": "it reads a file on the portal's host. Paste the token itself as `token:`",
    "client-certificate": "it is a file on the portal's host. Paste the certificate, "
    "base64-encoded, as `client-certificate-data:`",
    "client-key": "it is a file on the portal's host. Paste the key, base64-encoded, "
    "as `client-key-data:`",
    "certificate-authority": "it is a file on the portal's host. Paste the CA "
    "certificate, base64-encoded, as `certificate-authority-data:`",
}


class KubeconfigError(ValueError):
    """The kubeconfig cannot be used; the message says why and what to paste instead."""


def parse_kubeconfig(text: str) -> dict:
    """The kubeconfig as a mapping, checked: well-formed, and inline credentials only."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise KubeconfigError(f"This is not valid YAML: {error}") from None
    if not isinstance(config, dict) or config.get("kind", "Config") != "Config":
        raise KubeconfigError("This is not a kubeconfig (expected kind: Config).")
    clusters = _named_entries(config, "clusters", "cluster")
    users = _named_entries(config, "users", "user")
    contexts = _named_entries(config, "contexts", "context")
    current = config.get("current-context")
    if not isinstance(current, str) or current not in contexts:
        raise KubeconfigError("The kubeconfig's current-context names no context in it.")
    for name, context in contexts.items():
        for key, known in (("cluster", clusters), ("user", users)):
            if not isinstance(context.get(key), str) or context[key] not in known:
                raise KubeconfigError(f"Context “{name}” names no {key} of the kubeconfig.")
    for name, cluster in clusters.items():
        _check_keys(f"cluster “{name}”", cluster, CLUSTER_KEYS)
        _check_server(name, cluster.get("server"))
    for name, user in users.items():
        _check_keys(f"user “{name}”", user, USER_KEYS)
        if ("client-certificate-data" in user) != ("client-key-data" in user):
            raise KubeconfigError(
                f"User “{name}” needs both client-certificate-data and client-key-data."
            )
    return config


def _named_entries(config: dict, section: str, item: str) -> dict[str, dict]:
    """`name → body` of a section such as `clusters: [{name: x, cluster: {...}}]`."""
    entries = config.get(section)
    if not entries:
        raise KubeconfigError(f"The kubeconfig has no {section}.")
    if not isinstance(entries, list):
        raise KubeconfigError(f"The kubeconfig's {section} must be a list.")
    found: dict[str, dict] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise KubeconfigError(f"Each of the kubeconfig's {section} needs a name.")
        body = entry.get(item)
        if not isinstance(body, dict):
            raise KubeconfigError(f"{section[:-1].capitalize()} “{entry['name']}” has no {item}.")
        if entry["name"] in found:
            raise KubeconfigError(f"Two {section} are named “{entry['name']}”.")
        found[entry["name"]] = body
    return found


def _check_keys(what: str, body: dict, allowed: set[str]) -> None:
    for key, value in body.items():
        if key in PASTE_INSTEAD:
            raise KubeconfigError(
                f"The {what} uses `{key}`, which the portal does not accept: {PASTE_INSTEAD[key]}."
            )
        if key not in allowed:
            raise KubeconfigError(
                f"The {what} uses `{key}`, which the portal does not accept. Only inline "
                f"credentials are: {', '.join(sorted(allowed - {'extensions'}))}."
            )
        if key in DATA_KEYS and not _is_base64(value):
            raise KubeconfigError(f"The {what}'s {key} is not base64-encoded data.")
        if key in ("token", "tls-server-name") and not (isinstance(value, str) and value):
            raise KubeconfigError(f"The {what}'s {key} must be a non-empty string.")
        if key == "insecure-skip-tls-verify" and not isinstance(value, bool):
            raise KubeconfigError(f"The {what}'s {key} must be true or false.")


def _check_server(name: str, server) -> None:
    parts = urlsplit(server) if isinstance(server, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise KubeconfigError(f"Cluster “{name}” needs a server URL (https://host:port).")


def _is_base64(value) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def in_cluster_problem(environ=None, directory: Path | None = None) -> str:
    """Why the portal's service account cannot be used here ("" when it can)."""
    environ = os.environ if environ is None else environ
    directory = directory or SERVICE_ACCOUNT_DIR
    if not environ.get(SERVICE_HOST_ENV) or not environ.get(SERVICE_PORT_ENV):
        return (
            f"The portal is not running in a Kubernetes pod ({SERVICE_HOST_ENV} and "
            f"{SERVICE_PORT_ENV} are not set); paste a kubeconfig instead."
        )
    for name in ("token", "ca.crt"):
        path = directory / name
        if not path.is_file() or not path.stat().st_size:
            return (
                f"The portal's pod has no service account {name} at {path} "
                "(automountServiceAccountToken off?); paste a kubeconfig instead."
            )
    return ""
