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
import re
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
# Strings the client sends as they are, in a header or the TLS handshake: a line break or a
# control character there makes http.client refuse the request with an error that quotes
# the whole header, token included.
ONE_LINE_KEYS = {"token", "tls-server-name"}
# Real kubeconfigs are a few kilobytes; this leaves room for many clusters and users.
MAX_CHARS = 128 * 1024
# YAML errors quote what they stopped on; anything longer than a character or two may be
# part of a pasted secret.
QUOTED = re.compile(r"'[^']{3,}'|\"[^\"]{3,}\"")
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
    """The kubeconfig as a mapping, checked: well-formed, and inline credentials only.

    No message quotes the text: it holds the cluster's credentials.
    """
    config = _load_yaml(text)
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


def _load_yaml(text: str):
    if len(text) > MAX_CHARS:
        raise KubeconfigError(
            f"This kubeconfig is longer than {MAX_CHARS // 1024} KiB. Paste only the cluster, "
            "user and context the portal should use."
        )
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        raise KubeconfigError(f"This is not valid YAML: {_where(error)}.") from None
    except yaml.YAMLError:  # a ReaderError: the only kind without a line and column
        raise KubeconfigError(
            "This is not valid YAML: it holds a control character YAML does not allow."
        ) from None
    except RecursionError:  # PyYAML recurses once per level of nesting
        raise KubeconfigError("This is not a kubeconfig: its YAML is nested too deeply.") from None
    except (ValueError, TypeError, AttributeError):  # e.g. a 5,000-digit number, !!timestamp x
        raise KubeconfigError(
            "This is not a kubeconfig: a number, date or `!!`-tagged value in it cannot be read."
        ) from None


def _where(error: yaml.MarkedYAMLError) -> str:
    """The problem and its line and column, without the text it quotes."""
    problem = QUOTED.sub("…", error.problem or error.context or "unexpected content")
    mark = error.problem_mark or error.context_mark
    if mark is None:
        return problem
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


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
        if key in ONE_LINE_KEYS and not (isinstance(value, str) and value):
            raise KubeconfigError(f"The {what}'s {key} must be a non-empty string.")
        if key in ONE_LINE_KEYS and not _is_one_word(value):
            raise KubeconfigError(
                f"The {what}'s {key} contains a space, a line break or a control character. "
                f"Paste it on one line (`{key}: |` keeps a line break at its end)."
            )
        if key == "insecure-skip-tls-verify" and not isinstance(value, bool):
            raise KubeconfigError(f"The {what}'s {key} must be true or false.")


def _check_server(name: str, server) -> None:
    problem = KubeconfigError(f"Cluster “{name}” needs a server URL (https://host:port).")
    if not isinstance(server, str) or not _is_one_word(server):
        raise problem
    try:
        parts = urlsplit(server)
        hostname, _port = parts.hostname, parts.port  # .port raises on "h:abc" and "h:99999"
    except ValueError:  # e.g. "https://[::1", an unclosed IPv6 bracket
        raise problem from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise problem


def _is_one_word(value: str) -> bool:
    """No whitespace and no control characters: a value that fits in a header as it is."""
    return value.isprintable() and not any(character.isspace() for character in value)


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
