import ipaddress
import logging
import time
import uuid

from django.conf import settings
from django.urls import NoReverseMatch, resolve, reverse

from portal import logs
from portal.audit import current_request_id

access_log = logging.getLogger("portal.access")
# URL arguments that are bearer secrets: an invitation's token, allauth's password-reset and
# email-confirmation keys. Whoever reads the log must not be able to use them.
SECRET_URL_ARGUMENTS = frozenset({"token", "key"})


class RequestIdMiddleware:
    """Tag each request with an id: its audit entries are grouped by it, every log line
    written while answering it carries it (and the user), and so do the log lines of the
    tasks it enqueues (`portal.tasklog`). The response says it in `X-Request-ID`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.id = uuid.uuid4()
        token = current_request_id.set(request.id)
        user = getattr(request, "user", None)
        username = user.get_username() if user is not None and user.is_authenticated else None
        start = time.perf_counter()
        try:
            with logs.bind(request_id=request.id, user=username):
                response = self.get_response(request)
                access_log.info(
                    "%s %s %s %.0f ms",
                    request.method,
                    logged_path(request),
                    response.status_code,
                    (time.perf_counter() - start) * 1000,
                )
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = str(request.id)
        return response


def logged_path(request) -> str:
    """The request's path as the access log shows it: its secret arguments, if its route
    captures any, replaced by the word "redacted" (or, failing that, the route pattern)."""
    match = getattr(request, "resolver_match", None)
    if match is None or not SECRET_URL_ARGUMENTS & match.kwargs.keys():
        return request.path
    kwargs = {
        name: "redacted" if name in SECRET_URL_ARGUMENTS else value
        for name, value in match.kwargs.items()
    }
    try:
        return reverse(match.view_name, kwargs=kwargs)
    except NoReverseMatch:  # "redacted" does not fit the route's pattern
        return f"/{match.route}"


class OperationsMiddleware:
    """Answer the probes and the metrics scrape before any other middleware runs.

    Kubelets and Prometheus call a pod by its IP address, which is not in ALLOWED_HOSTS,
    and need no session, CSRF check or request id: these three views are dispatched here
    straight from the URLconf (so they stay ordinary, testable URLs), ahead of the host
    check of CommonMiddleware. They reveal nothing about the request's host.
    """

    PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info not in self.PATHS:
            return self.get_response(request)
        match = resolve(request.path_info)
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)


def client_ip(request) -> str:
    """The address of the client, seen through `TRUSTED_PROXY_COUNT` reverse proxies.

    Each proxy appends the address it received the request from to X-Forwarded-For, and the
    last proxy's own address is REMOTE_ADDR; so the client is the entry that many places
    from the right. Entries further left are whatever the client sent and are never
    believed. With no trusted proxy (the default), or a header too short or malformed (a
    request that did not come through the proxies), it is REMOTE_ADDR.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXY_COUNT
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if count and len(hops) >= count:
        try:
            return str(ipaddress.ip_address(hops[-count]))
        except ValueError:
            pass
    return remote
