"""Prometheus metrics of the web processes and the task queue, and who may read them.

Correct with several processes:

- HTTP request latency is a prometheus-client histogram. Under gunicorn each worker writes
  it to files in `PROMETHEUS_MULTIPROC_DIR` (set up by `portal/gunicorn_conf.py`) and a
  scrape adds up the files of every worker of that server, dead ones included, so no
  request is lost when a worker is recycled. Each server (pod) reports its own requests.
- Everything else is read from the shared database or broker at scrape time (custom
  collectors, here and in `pools.metrics`), so every process reports the same numbers.

`/metrics` answers a request that presents `Authorization: Bearer <METRICS_TOKEN>` or that
comes from an address in `METRICS_ALLOWED_IPS`; anything else gets 403 (404 when neither is
configured, as if the endpoint did not exist). Behind reverse proxies both the connecting
address and the client's (`portal.middleware.client_ip`) must be allowed: the ingress
controller's own address is in the cluster's network, whoever it forwards.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time

from django.conf import settings
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.signing import SignedPackage
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from portal.middleware import client_ip

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUEST_DURATION = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, URL route and status code.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
    registry=None,  # collected by `registry()`, never by the global default registry
)
# The client chooses the method: any other word is counted as "other", or each one would be
# a new series in every worker's memory and multiprocess files.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def registry(*collectors) -> CollectorRegistry:
    """A fresh registry for one scrape: the HTTP histogram plus `collectors`."""
    result = CollectorRegistry(auto_describe=True)
    if multiprocess():
        MultiProcessCollector(result)
    else:
        result.register(REQUEST_DURATION)
    for collector in collectors:
        result.register(collector)
    return result


class RequestMetricsMiddleware:
    """Observe every request's latency (first in MIDDLEWARE, so it times all the others)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        # The route pattern, not the path: a label per URL pattern, not per object.
        route = f"/{match.route}" if match is not None else "unmatched"
        method = request.method if request.method in STANDARD_METHODS else "other"
        REQUEST_DURATION.labels(method, route, str(response.status_code)).observe(
            time.perf_counter() - start
        )
        return response


# -- who may read /metrics -----------------------------------------------------------------


def _bearer_token(request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def access(request) -> int:
    """200 when the request may read metrics, else the status to answer (403 or 404)."""
    token = settings.METRICS_TOKEN
    networks = settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return 404
    presented = _bearer_token(request)
    if token and presented and hmac.compare_digest(presented.encode(), token.encode()):
        return 200
    addresses = {request.META.get("REMOTE_ADDR", ""), client_ip(request)}
    return 200 if all(_allowed(address, networks) for address in addresses) else 403


def _allowed(address: str, networks) -> bool:
    """Whether `address` is in `networks`; an IPv4 client seen in its IPv4-mapped IPv6
    form (a dual-stack bind) counts as that IPv4 address."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in networks)


# -- the task queue ------------------------------------------------------------------------


def queue_names() -> list[str]:
    """The django-q2 queues the portal uses: the default cluster's and the pool cluster's."""
    names = [settings.Q_CLUSTER["name"]]
    if settings.WARM_POOL_CLUSTER:
        names.append(settings.WARM_POOL_CLUSTER)
    return names


def _oldest_package(broker) -> str | None:
    """The signed package of the task that has waited longest, if any."""
    if isinstance(broker, ORM):
        row = (
            broker.get_connection()
            .filter(key=broker.list_key, lock__lte=timezone.now())
            .order_by("id")
            .values_list("payload", flat=True)
            .first()
        )
        return row
    if isinstance(broker, Redis):
        return broker.connection.lindex(broker.list_key, 0)
    return None


def oldest_age(broker, now) -> float:
    """Seconds the oldest waiting task has waited (0 when none is waiting)."""
    package = _oldest_package(broker)
    if package is None:
        return 0.0
    try:
        started = SignedPackage.loads(package)["started"]
    except Exception:  # a package this process cannot read is not the metric's business
        return 0.0
    return max((now - started).total_seconds(), 0.0)


class QueueCollector:
    """Depth of each django-q2 queue and the age of its oldest waiting task."""

    def collect(self):
        depth = GaugeMetricFamily(
            "portal_task_queue_depth", "Tasks waiting for a worker.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "portal_task_queue_oldest_age_seconds",
            "How long the oldest waiting task has waited.",
            labels=["queue"],
        )
        now = timezone.now()
        for name in queue_names():
            broker = get_broker(name)
            depth.add_metric([name], broker.queue_size())
            age.add_metric([name], oldest_age(broker, now))
        yield depth
        yield age
