"""gunicorn's configuration: `gunicorn --config python:portal.gunicorn_conf portal.wsgi`.

Read from the environment (README: configuration reference) with the same helpers as the
settings, so a typo stops the server with the variable's name:

- `WEB_BIND` (default `127.0.0.1:$PORT`, PORT defaulting to 8000; the image binds
  `0.0.0.0:8000`), `WEB_CONCURRENCY` worker processes (default 2), `WEB_THREADS` threads
  each (default 4), `WEB_TIMEOUT` seconds a request may take (default 60).
- Metrics from several worker processes: each worker writes its prometheus-client values
  to files in `PROMETHEUS_MULTIPROC_DIR` (a fresh temporary directory when unset); the
  directory is emptied when the server starts, and a dead worker's live gauges are dropped.
  The variable is set here, before the application (and prometheus-client) is imported in
  the workers.
- Logs: gunicorn's own messages go through the portal's formatter (`LOG_FORMAT`); the
  access log is off because the portal logs every request itself, with its request id.
- Reverse proxies: `FORWARDED_ALLOW_IPS` lists the addresses or networks of the proxies in
  front (default: this host only). Their `X-Forwarded-*` headers are believed; a request
  from any other address has those headers removed before the portal sees them, so it
  cannot claim HTTPS (Django's `SECURE_PROXY_SSL_HEADER`) or another address
  (`TRUSTED_PROXY_COUNT` in the login throttle and `/metrics`) by sending them itself.
  Everything inside the listed networks is believed, though: listing a whole pod network
  trusts every pod in it that can reach the port (on Kubernetes, NetworkPolicy
  gpu-paas-portal-web narrows that to the ingress controller's pods). `*` is refused. An
  IPv4 proxy reaching a dual-stack bind (`[::]:8000`) is seen as `::ffff:a.b.c.d`, so each
  IPv4 network is trusted in that form too.
"""

import ipaddress
import os
import shutil
import tempfile
from pathlib import Path

from portal import logs
from portal.env import ConfigurationError, env_choice, env_int, env_list, env_networks, env_str

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="portal-metrics-")
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

bind = env_str("WEB_BIND") or f"127.0.0.1:{env_int('PORT', 8000, minimum=1)}"
workers = env_int("WEB_CONCURRENCY", 2, minimum=1)
threads = env_int("WEB_THREADS", 4, minimum=1)
worker_class = "gthread"
timeout = env_int("WEB_TIMEOUT", 60, minimum=5)
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (with jitter, so they do not all restart at once).
max_requests = env_int("WEB_MAX_REQUESTS", 5000, minimum=0)
max_requests_jitter = max_requests // 10
# Heartbeat files in memory: a container's root filesystem may be read-only or slow.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No runtime control socket: it would be written under $HOME, read-only in the container.
control_socket_disable = True
if "*" in env_list("FORWARDED_ALLOW_IPS", []):
    raise ConfigurationError(
        "FORWARDED_ALLOW_IPS must not be '*': any client that reaches gunicorn could then "
        "claim HTTPS or another address; list the reverse proxies' addresses or networks "
        "(e.g. the ingress controller's pod network, 10.244.0.0/16)"
    )


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _with_ipv4_mapped_forms(networks: list[Network]) -> list[Network]:
    """The networks, each IPv4 one followed by its IPv4-mapped IPv6 form: a proxy reaching
    a dual-stack bind (`[::]`) over IPv4 is seen as ::ffff:a.b.c.d, which neither gunicorn
    nor `ipaddress` finds in an IPv4 network."""
    found: list[Network] = []
    for network in networks:
        found.append(network)
        if network.version == 4:
            mapped = f"::ffff:{network.network_address}/{96 + network.prefixlen}"
            found.append(ipaddress.ip_network(mapped))
    return found


# One list for gunicorn's own check (X-Forwarded-Proto → wsgi.url_scheme) and for
# `pre_request`'s, so the two never disagree about who is a proxy.
TRUSTED_PROXIES = _with_ipv4_mapped_forms(env_networks("FORWARDED_ALLOW_IPS", ["127.0.0.1", "::1"]))
forwarded_allow_ips = ",".join(str(network) for network in TRUSTED_PROXIES)
_level = env_choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
logconfig_dict = logs.logging_config(env_choice("LOG_FORMAT", "text", {"text", "json"}), _level)
logconfig_dict["loggers"] |= {
    "gunicorn.error": {"level": _level, "handlers": [], "propagate": True},
    # Off: the portal's own request log (portal.access) has the request id and user.
    "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
}


def on_starting(server):
    """Start from an empty metrics directory: old files would add up to stale counts."""
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for entry in METRICS_DIR.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def pre_request(worker, req):
    """Drop forwarding headers (`X-Forwarded-For`, `-Proto`, `Forwarded`...) a client that is
    not a trusted proxy sent: gunicorn itself ignores them then, but would still hand them
    to Django, which reads `X-Forwarded-Proto` and `X-Forwarded-For` on its own."""
    if not _is_trusted_proxy(req.peer_addr):
        req.headers = [
            (name, value) for name, value in req.headers if not _is_forwarding_header(name)
        ]


def _is_trusted_proxy(peer_addr) -> bool:
    if not isinstance(peer_addr, tuple):  # a UNIX socket: only this host can connect
        return True
    try:
        address = ipaddress.ip_address(peer_addr[0])
    except ValueError:
        return False
    return any(address in network for network in TRUSTED_PROXIES)


def _is_forwarding_header(name: str) -> bool:
    name = name.upper().replace("_", "-")
    return name == "FORWARDED" or name.startswith("X-FORWARDED-")


def child_exit(server, worker):
    # Imported here, in the master, long after PROMETHEUS_MULTIPROC_DIR was set above.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
