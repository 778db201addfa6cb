"""Drive an Okta (OIDC) login through the Django test client and the real test provider.

The test client plays the portal's side (login POST, callback GET); `requests` plays the
browser at the provider (login form). The client pretends to be http://127.0.0.1:8000 so the
redirect_uri is one the provider's test client accepts.
"""

from __future__ import annotations

import html
import re
import urllib.parse

import requests
from django.test import Client

from portal.models import SsoConfiguration, SsoGroupMapping, Team
from tests.oidc.provider import OidcProvider

HOST = {"SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000"}
CALLBACK_PREFIX = "http://127.0.0.1:8000/accounts/oidc/okta/login/callback/"


def configure_sso(op: OidcProvider, **fields) -> SsoConfiguration:
    config = SsoConfiguration.load()
    config.enabled = True
    config.issuer = op.issuer
    config.client_id = op.client_id
    config.client_secret = op.client_secret
    for name, value in fields.items():
        setattr(config, name, value)
    config.save()
    return config


def map_group(sso_group: str, team_name: str, role: str) -> Team:
    team, _ = Team.objects.get_or_create(name=team_name, defaults={"role": role})
    SsoGroupMapping.objects.create(sso_group=sso_group, team=team)
    return team


def sso_login(
    client: Client,
    op: OidcProvider,
    username: str,
    password: str,
    start_path: str = "/accounts/oidc/okta/login/",
    **post,
):
    """Log in through the provider; returns the portal's response to the callback."""
    start = client.post(start_path, {"process": "login", **post}, **HOST)
    assert start.status_code == 302, start.content[:500]
    authorize = start["Location"]
    assert authorize.startswith(op.authorization_endpoint), authorize
    http = requests.Session()
    page = http.get(authorize, timeout=10)
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:500]
    action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1))
    response = http.post(
        urllib.parse.urljoin(page.url, action),
        data={"username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    for _ in range(10):
        assert response.status_code in (302, 303), response.text[:500]
        location = urllib.parse.urljoin(response.url, response.headers["Location"])
        if location.startswith(CALLBACK_PREFIX):
            parts = urllib.parse.urlsplit(location)
            return client.get(parts.path, dict(urllib.parse.parse_qsl(parts.query)), **HOST)
        response = http.get(location, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never redirected back to the portal")
