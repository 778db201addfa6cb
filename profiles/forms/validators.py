"""Validation the catalog's forms share: infrastructure secrets a driver could never use,
and profile names that would give no slug, or another profile's."""

import base64
import ipaddress
import re
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ValidationError
from django.db import models

from profiles.kubeconfig import KubeconfigError, parse_kubeconfig
from profiles.models import profile_slug

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)


def validate_ssh_private_key(text: str) -> None:
    data = text.strip().encode() + b"\n"
    loaders = [
        lambda: serialization.load_ssh_private_key(data, password=None),
        lambda: serialization.load_pem_private_key(data, password=None),
    ]
    for load in loaders:
        try:
            load()
            return
        except (ValueError, TypeError):
            continue
        except Exception:  # unsupported key types raise UnsupportedAlgorithm
            continue
    raise ValidationError(
        "This is not an unencrypted SSH private key (OpenSSH or PEM format). "
        "Paste the whole key, including its BEGIN and END lines."
    )


def validate_kubeconfig(text: str) -> None:
    """A well-formed kubeconfig with inline credentials only (`profiles.kubeconfig`), whose
    servers are https URLs and whose certificates and keys load: what the client would
    otherwise find out only when it connects, as "cannot reach the cluster"."""
    try:
        config = parse_kubeconfig(text)
    except KubeconfigError as error:
        raise ValidationError(str(error)) from None
    for entry in config["clusters"]:
        what = f"Cluster “{entry['name']}”"
        _check_https_server(what, entry["cluster"]["server"])
        if "certificate-authority-data" in entry["cluster"]:
            _certificates(what, "certificate-authority-data", entry["cluster"])
    for entry in config["users"]:
        if "client-certificate-data" in entry["user"]:  # with its key: parse_kubeconfig says so
            _check_client_certificate(f"User “{entry['name']}”", entry["user"])


def _check_https_server(what: str, server: str) -> None:
    """https only: over http the token, or the whole API traffic, would travel in clear
    (a portal in the cluster it manages uses its service account instead). A path is
    kept: a proxy such as Rancher serves a cluster's API under one."""
    parts = urlsplit(server)
    if parts.scheme != "https":
        raise ValidationError(
            f"{what}'s server must be an https:// URL: over http its credentials and every "
            "answer would travel unencrypted."
        )
    if parts.username is not None or "?" in server or "#" in server:
        raise ValidationError(
            f"{what}'s server must be https://host or https://host:port (a path is fine), "
            "without a user name, query or fragment."
        )


def _decoded(key: str, body: dict) -> bytes:
    return base64.b64decode("".join(body[key].split()))  # base64 checked by parse_kubeconfig


def _certificates(what: str, key: str, body: dict) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_decoded(key, body))
    except ValueError:
        raise ValidationError(
            f"{what}'s {key} is not a PEM certificate: base64-encode the whole file, "
            "including its BEGIN CERTIFICATE and END CERTIFICATE lines."
        ) from None


def _check_client_certificate(what: str, user: dict) -> None:
    certificate = _certificates(what, "client-certificate-data", user)[0]
    try:
        key = serialization.load_pem_private_key(_decoded("client-key-data", user), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValidationError(
            f"{what}'s client-key-data is not an unencrypted PEM private key: base64-encode "
            "the whole key file, including its BEGIN and END lines."
        ) from None
    if _public_bytes(key.public_key()) != _public_bytes(certificate.public_key()):
        raise ValidationError(
            f"{what}'s client-key-data is not the key of its client-certificate-data."
        )


def _public_bytes(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def validate_hosts(text: str) -> list[str]:
    hosts = [line.strip() for line in text.splitlines() if line.strip()]
    if not hosts:
        raise ValidationError("List at least one host, one per line.")
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not HOSTNAME.match(host):
                raise ValidationError(f"“{host}” is not a host name or IP address.") from None
    if len(set(hosts)) != len(hosts):
        raise ValidationError("A host is listed twice.")
    return hosts


def validate_new_profile_name(model: type[models.Model], name: str) -> None:
    """A new profile's slug, its name reduced to a-z, 0-9 and dashes, must be a new one:
    drivers and pages name the profile by it, and the column is unique."""
    slug = profile_slug(name)  # as `model.save()` makes it
    if not slug:
        raise ValidationError("Use at least one letter or digit (a–z, 0–9) in the name.")
    taken = model.objects.filter(slug=slug).first()
    if taken is not None and taken.name != name:  # the same name: the unique check says so
        raise ValidationError(
            f"This name is too close to “{taken.name}”: both become “{slug}”, the identifier "
            "drivers and pages use. Choose another."
        )
