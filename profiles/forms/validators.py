"""Validation the catalog's forms share: infrastructure secrets a driver could never use,
and profile names that would give no slug, or another profile's."""

import ipaddress
import re

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
