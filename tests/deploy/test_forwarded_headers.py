"""Which clients may set X-Forwarded-* headers: the proxies in FORWARDED_ALLOW_IPS only.

gunicorn believes X-Forwarded-Proto only from those addresses, but passes every header on
to Django, which reads X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER) and X-Forwarded-For
(TRUSTED_PROXY_COUNT: the login throttle, /metrics) itself; so the portal's gunicorn
configuration removes them from anyone else's requests. Checked with real gunicorn servers
(`bin/entrypoint web`) on the test database, the client being 127.0.0.1: a proxy when it is
listed, an ordinary client when it is not.
"""

from __future__ import annotations

import runpy
import urllib.error
import urllib.request
from http import HTTPStatus
from pathlib import Path

import pytest
from django.conf import settings
from gunicorn.config import Config
from gunicorn.http.message import _ip_in_allow_list

from portal.env import ConfigurationError
from tests.deploy.processes import (
    free_port,
    get,
    shared_database_env,
    start,
    stop,
    wait_until_serving,
)
from tests.deploy.test_manifests import render_config
from tests.workspace_fixtures import database_url

GUNICORN_CONF = Path(settings.BASE_DIR) / "portal" / "gunicorn_conf.py"
ANOTHER_CLIENT = "198.51.100.7"


def gunicorn_conf(monkeypatch, tmp_path, env: dict[str, str]) -> dict:
    """portal/gunicorn_conf.py as gunicorn would load it with `env`."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


# -- configuration ------------------------------------------------------------------------


def test_only_this_host_is_a_trusted_proxy_by_default(monkeypatch, tmp_path):
    conf = gunicorn_conf(monkeypatch, tmp_path, {})
    assert conf["forwarded_allow_ips"] == "127.0.0.1/32,::ffff:7f00:1/128,::1/128"


def test_proxies_are_given_as_addresses_or_networks(monkeypatch, tmp_path):
    conf = gunicorn_conf(monkeypatch, tmp_path, {"FORWARDED_ALLOW_IPS": "10.244.0.0/16, 10.9.8.7"})
    assert conf["forwarded_allow_ips"] == (
        "10.244.0.0/16,::ffff:af4:0/112,10.9.8.7/32,::ffff:a09:807/128"
    )


@pytest.mark.parametrize(
    "peer, trusted",
    [
        ("10.244.3.4", True),
        ("::ffff:10.244.3.4", True),  # the same proxy reaching a dual-stack bind
        ("::ffff:10.245.0.1", False),
        ("10.245.0.1", False),
        ("fd00::10.244.3.4", False),
    ],
)
def test_gunicorn_and_the_portal_agree_on_ipv4_proxies_seen_as_ipv6(
    monkeypatch, tmp_path, peer, trusted
):
    """gunicorn's own check (X-Forwarded-Proto for wsgi.url_scheme) and `pre_request`'s,
    for a peer as the socket reports it."""
    conf = gunicorn_conf(monkeypatch, tmp_path, {"FORWARDED_ALLOW_IPS": "10.244.0.0/16"})
    config = Config()
    config.set("forwarded_allow_ips", conf["forwarded_allow_ips"])
    allow_list, networks = config.forwarded_allow_ips, config.forwarded_allow_networks()
    assert _ip_in_allow_list(peer, allow_list, networks) is trusted
    assert conf["_is_trusted_proxy"]((peer, 443)) is trusted


@pytest.mark.parametrize("value", ["*", "10.244.0.0/16,*"])
def test_trusting_every_client_is_refused(monkeypatch, tmp_path, value):
    with pytest.raises(ConfigurationError, match=r"FORWARDED_ALLOW_IPS must not be '\*'"):
        gunicorn_conf(monkeypatch, tmp_path, {"FORWARDED_ALLOW_IPS": value})


def test_a_malformed_proxy_address_is_refused_by_name(monkeypatch, tmp_path):
    with pytest.raises(ConfigurationError, match="FORWARDED_ALLOW_IPS: 'ingress' is not an IP"):
        gunicorn_conf(monkeypatch, tmp_path, {"FORWARDED_ALLOW_IPS": "ingress"})


def test_the_dev_overlay_trusts_the_private_ranges_only(monkeypatch, tmp_path):
    conf = gunicorn_conf(monkeypatch, tmp_path, render_config("dev"))
    assert conf["forwarded_allow_ips"] == (
        "10.0.0.0/8,::ffff:a00:0/104,172.16.0.0/12,::ffff:ac10:0/108,"
        "192.168.0.0/16,::ffff:c0a8:0/112"
    )


def test_the_production_overlay_refuses_to_start_until_the_proxies_are_named(monkeypatch, tmp_path):
    """Its placeholder is no address: the operator has to put the ingress controller's."""
    production = render_config("production")
    assert "REPLACE" in production["FORWARDED_ALLOW_IPS"]
    with pytest.raises(ConfigurationError, match="FORWARDED_ALLOW_IPS: 'REPLACE-with-"):
        gunicorn_conf(monkeypatch, tmp_path, production)


# -- a real server ------------------------------------------------------------------------


@pytest.fixture
def serve(shared_database, tmp_path):
    """Start `bin/entrypoint web` with FORWARDED_ALLOW_IPS set; return its base URL."""
    servers = []

    def start_server(forwarded_allow_ips: str, bind: str = "127.0.0.1") -> str:
        """`bind` "[::]" listens dual-stack; the server is reached over IPv4 either way."""
        port = free_port()
        env = shared_database_env(
            database_url(shared_database),
            tmp_path,
            WEB_BIND=f"{bind}:{port}",
            WEB_CONCURRENCY="1",
            SECURE_COOKIES="true",
            TRUSTED_PROXY_COUNT="1",
            METRICS_ALLOWED_IPS="127.0.0.1",
            FORWARDED_ALLOW_IPS=forwarded_allow_ips,
        )
        log = tmp_path / f"web-{port}.log"
        servers.append(start(["web"], env, log))
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{url}/healthz", servers[-1], log)
        return url

    yield start_server
    for server in servers:
        stop(server)


def answers(url: str) -> tuple[bool, int]:
    """Whether the portal took a request claiming HTTPS for one (it sends HSTS on HTTPS
    responses only), and how /metrics, open to 127.0.0.1 alone, answered a request that
    claims to come from another client."""
    request = urllib.request.Request(f"{url}/no-such-page", headers={"X-Forwarded-Proto": "https"})
    with pytest.raises(urllib.error.HTTPError) as not_found:
        urllib.request.urlopen(request, timeout=10)
    assert not_found.value.code == HTTPStatus.NOT_FOUND
    status, _ = get(f"{url}/metrics", {"X-Forwarded-For": ANOTHER_CLIENT})
    return "Strict-Transport-Security" in not_found.value.headers, status


@pytest.mark.django_db(transaction=True)
def test_forwarding_headers_from_a_client_that_is_no_proxy_are_ignored(serve):
    url = serve("10.244.0.0/16")  # the ingress controller's pods; the test is not one
    claimed_https, metrics_status = answers(url)
    assert not claimed_https
    assert metrics_status == HTTPStatus.OK  # seen as 127.0.0.1, which it is


@pytest.mark.django_db(transaction=True)
def test_forwarding_headers_from_a_trusted_proxy_are_believed(serve):
    url = serve("127.0.0.1")
    claimed_https, metrics_status = answers(url)
    assert claimed_https
    assert metrics_status == HTTPStatus.FORBIDDEN  # the proxy's client, 198.51.100.7


@pytest.mark.django_db(transaction=True)
def test_a_listed_proxy_reaching_a_dual_stack_bind_over_ipv4_is_believed(serve):
    """WEB_BIND=[::]:8000 (dual-stack clusters and hosts): the IPv4 proxy's connection
    arrives as ::ffff:127.0.0.1. Were it not recognised, its X-Forwarded-Proto and
    X-Forwarded-For would be dropped: HTTPS never seen (no HSTS), every client counted as
    the proxy by the login throttle."""
    url = serve("127.0.0.1", bind="[::]")
    request = urllib.request.Request(f"{url}/no-such-page", headers={"X-Forwarded-Proto": "https"})
    with pytest.raises(urllib.error.HTTPError) as not_found:
        urllib.request.urlopen(request, timeout=10)
    assert not_found.value.code == HTTPStatus.NOT_FOUND
    assert "Strict-Transport-Security" in not_found.value.headers
