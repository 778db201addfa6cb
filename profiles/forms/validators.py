"""Validation of infrastructure secrets: reject what a driver could never use."""

import ipaddress
import re

from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ValidationError

from profiles.kubeconfig import KubeconfigError, parse_kubeconfig

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
    """A well-formed kubeconfig with inline credentials only (`profiles.kubeconfig`)."""
    try:
        parse_kubeconfig(text)
    except KubeconfigError as error:
        raise ValidationError(str(error)) from None


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
