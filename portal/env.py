"""Tiny helpers that read settings from environment variables and fail loudly on bad values.

A typo in a production environment must stop the process at start-up with a message that
names the variable, not surface later as a confusing default.
"""

import os
import re
from ipaddress import IPv4Network, IPv6Network, ip_network

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


class ConfigurationError(Exception):
    pass


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ConfigurationError(f"{name}={value!r} must be one of {', '.join(sorted(choices))}")
    return value


def env_networks(name: str, default: list[str]) -> list[IPv4Network | IPv6Network]:
    """A comma-separated list of addresses or CIDR networks, e.g. `10.0.0.0/8,127.0.0.1`."""
    networks = []
    for item in env_list(name, default):
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"{name}: {item!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
    return networks


def env_url(name: str, default: str, schemes: tuple[str, ...], hint: str) -> str:
    """A URL whose scheme is one of `schemes` (`redis`), or empty. A refusal quotes only the
    scheme: the rest may hold a password, and the message ends up in the crash log."""
    value = os.environ.get(name, default)
    scheme, separator, _ = value.partition("://")
    if not value or (separator and scheme in schemes):
        return value
    if separator and URL_SCHEME.fullmatch(scheme):
        raise ConfigurationError(f"{name} has the scheme {scheme!r}: {hint}")
    raise ConfigurationError(f"{name} is not a URL: {hint}")
