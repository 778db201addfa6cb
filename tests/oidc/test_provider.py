"""Tests of the test OIDC provider itself, driven over HTTP with ``requests`` (no Django)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import requests

from .provider import (
    DEFAULT_CALLBACK_PATH,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    OidcProvider,
)

# A live-server port nobody registered exactly: accepted through redirect_uri_prefix.
REDIRECT_URI = f"http://127.0.0.1:54321{DEFAULT_CALLBACK_PATH}"


@dataclass
class LoginResult:
    code: str
    state: str
    nonce: str
    callback_url: str
    http: requests.Session


def _form(page: str) -> tuple[str, dict[str, str]]:
    """Return (action, hidden inputs) of the first form of an HTML page."""
    match = re.search(r'<form[^>]*action="([^"]+)"', page)
    assert match, page
    hidden = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page),
    )
    return html.unescape(match.group(1)), hidden


def _follow_until_callback(
    http: requests.Session, response: requests.Response, redirect_uri: str
) -> str:
    """Follow provider redirects by hand until the User-Agent is sent to ``redirect_uri``."""
    for _ in range(10):
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        location = urllib.parse.urljoin(response.url, response.headers["Location"])
        if location.startswith(redirect_uri):
            return location
        response = http.get(location, allow_redirects=False, timeout=10)
    raise AssertionError("too many redirects")


def start_authorize(
    op: OidcProvider,
    http: requests.Session,
    *,
    scope: str = "openid profile email",
    redirect_uri: str = REDIRECT_URI,
    extra: dict[str, str] | None = None,
    follow: bool = True,
) -> tuple[requests.Response, str, str]:
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {
        "client_id": DEFAULT_CLIENT_ID,
        "response_type": "code",
        "scope": scope,
        "redirect_uri": redirect_uri,
        "state": state,
        "nonce": nonce,
        **(extra or {}),
    }
    response = http.get(
        op.authorization_endpoint, params=params, allow_redirects=follow, timeout=10
    )
    return response, state, nonce


def login(
    op: OidcProvider,
    username: str,
    password: str,
    *,
    scope: str = "openid profile email",
    http: requests.Session | None = None,
    extra: dict[str, str] | None = None,
) -> LoginResult:
    """Authorization-code flow through the provider's HTML login page."""
    http = http or requests.Session()
    page, state, nonce = start_authorize(op, http, scope=scope, extra=extra)
    assert page.status_code == 200, page.text
    assert page.url.startswith(f"{op.issuer}/interaction/")
    assert 'name="username"' in page.text and 'name="password"' in page.text
    assert "Sign in" in page.text
    action, _ = _form(page.text)
    response = http.post(
        urllib.parse.urljoin(page.url, action),
        data={"username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    callback = _follow_until_callback(http, response, REDIRECT_URI)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)
    assert query["state"] == [state]
    assert query["iss"] == [op.issuer]
    return LoginResult(query["code"][0], state, nonce, callback, http)


def exchange(op: OidcProvider, code: str, *, auth: str = "basic", **extra: str) -> dict[str, Any]:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, **extra}
    kwargs: dict[str, Any] = {}
    if auth == "basic":
        kwargs["auth"] = (DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
    else:
        data.update(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    response = requests.post(op.token_endpoint, data=data, timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def verify_id_token(op: OidcProvider, id_token: str, nonce: str) -> dict[str, Any]:
    signing_key = jwt.PyJWKClient(op.jwks_uri).get_signing_key_from_jwt(id_token)
    claims = jwt.decode(
        id_token,
        signing_key.key,
        algorithms=["RS256"],
        audience=DEFAULT_CLIENT_ID,
        issuer=op.issuer,
    )
    assert claims["nonce"] == nonce
    return claims


def userinfo(op: OidcProvider, access_token: str) -> dict[str, Any]:
    response = requests.get(
        op.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def full_login(op: OidcProvider, username: str, password: str, **kwargs: Any) -> tuple[dict, dict]:
    result = login(op, username, password, **kwargs)
    tokens = exchange(op, result.code)
    return verify_id_token(op, tokens["id_token"], result.nonce), userinfo(
        op, tokens["access_token"]
    )


# ----------------------------------------------------------------------------------------------


def test_discovery_mimics_okta(oidc_provider: OidcProvider) -> None:
    op = oidc_provider
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/oauth2/default", op.issuer)
    assert op.issuer == f"http://127.0.0.1:{op.port}/oauth2/default"
    doc = requests.get(f"{op.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == op.issuer
    base = f"{op.issuer}/v1/"
    assert doc["authorization_endpoint"] == base + "authorize"
    assert doc["token_endpoint"] == base + "token"
    assert doc["userinfo_endpoint"] == base + "userinfo"
    assert doc["jwks_uri"] == base + "keys"
    assert doc["end_session_endpoint"] == base + "logout"
    assert {"client_secret_basic", "client_secret_post"} <= set(
        doc["token_endpoint_auth_methods_supported"]
    )
    assert {"openid", "profile", "email", "groups"} <= set(doc["scopes_supported"])
    assert "groups" in doc["claims_supported"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = requests.get(doc["jwks_uri"], timeout=10).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and "d" not in k for k in keys)


def test_authorization_code_flow_delivers_groups(oidc_provider: OidcProvider) -> None:
    op = oidc_provider
    result = login(op, "ada", "ada-password")
    tokens = exchange(op, result.code, auth="basic")
    assert tokens["token_type"].lower() == "bearer"
    claims = verify_id_token(op, tokens["id_token"], result.nonce)
    assert claims["sub"] == "00u-ada"
    assert claims["email"] == "ada@example.com"
    assert claims["email_verified"] is True
    assert claims["preferred_username"] == "ada"
    assert claims["groups"] == ["gpu-users", "ml-team"]

    info = userinfo(op, tokens["access_token"])
    assert info["sub"] == "00u-ada"
    assert info["groups"] == ["gpu-users", "ml-team"]
    assert info["given_name"] == "Ada" and info["family_name"] == "Lovelace"

    # The code is single-use.
    data = {"grant_type": "authorization_code", "code": result.code, "redirect_uri": REDIRECT_URI}
    again = requests.post(
        op.token_endpoint, data=data, auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET), timeout=10
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_client_secret_post_pkce_and_groups_scope(oidc_provider: OidcProvider) -> None:
    op = oidc_provider
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    result = login(
        op,
        "grace",
        "grace-password",
        scope="openid groups",
        extra={"code_challenge": challenge, "code_challenge_method": "S256"},
    )
    tokens = exchange(op, result.code, auth="post", code_verifier=verifier)
    claims = verify_id_token(op, tokens["id_token"], result.nonce)
    assert claims["groups"] == ["unmapped"]
    assert "email" not in claims  # email scope not requested
    assert userinfo(op, tokens["access_token"])["groups"] == ["unmapped"]


def test_wrong_password_shows_form_again(oidc_provider: OidcProvider) -> None:
    op = oidc_provider
    http = requests.Session()
    page, _, _ = start_authorize(op, http)
    action, _ = _form(page.text)
    response = http.post(
        urllib.parse.urljoin(page.url, action),
        data={"username": "ada", "password": "nope"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 200
    assert "Invalid username or password." in response.text
    assert 'name="username"' in response.text and 'value="ada"' in response.text
    assert 'name="password"' in response.text and "Sign in" in response.text
    # The same interaction still accepts the right password afterwards.
    retry = http.post(
        urllib.parse.urljoin(page.url, action),
        data={"username": "ada", "password": "ada-password"},
        allow_redirects=False,
        timeout=10,
    )
    assert "code=" in _follow_until_callback(http, retry, REDIRECT_URI)


def test_unknown_redirect_uri_is_rejected(oidc_provider: OidcProvider) -> None:
    response, _, _ = start_authorize(
        oidc_provider, requests.Session(), redirect_uri="http://evil.example/callback/"
    )
    assert response.status_code == 400
    assert "redirect_uri" in response.text


def test_sso_session_and_clear_sessions(oidc_provider: OidcProvider) -> None:
    op = oidc_provider
    first = login(op, "ada", "ada-password")
    # Same browser: the provider session is reused, no login form.
    response, _, _ = start_authorize(op, first.http, follow=False)
    assert "code=" in _follow_until_callback(first.http, response, REDIRECT_URI)
    op.clear_sessions()
    page, _, _ = start_authorize(op, first.http)
    assert page.status_code == 200 and 'name="password"' in page.text


def test_logout_endpoint(oidc_provider: OidcProvider) -> None:
    op = oidc_provider
    result = login(op, "ada", "ada-password")
    tokens = exchange(op, result.code)
    post_logout = "http://127.0.0.1:54321/"
    page = result.http.get(
        op.end_session_endpoint,
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": post_logout},
        timeout=10,
    )
    assert page.status_code == 200, page.text
    action, hidden = _form(page.text)
    assert hidden.get("logout") == "yes"
    response = result.http.post(
        urllib.parse.urljoin(page.url, action), data=hidden, allow_redirects=False, timeout=10
    )
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == post_logout


def test_group_changes_are_seen_on_next_login() -> None:
    # A private provider: this test mutates users, the session fixture must stay pristine.
    with OidcProvider().start() as op:
        claims, info = full_login(op, "ada", "ada-password")
        assert claims["groups"] == ["gpu-users", "ml-team"]

        op.set_groups("ada", ["gpu-admins"])  # via POST /__test__/users/ada/groups
        claims, info = full_login(op, "ada", "ada-password")
        assert claims["groups"] == ["gpu-admins"]
        assert info["groups"] == ["gpu-admins"]
        assert [u["groups"] for u in op.users() if u["username"] == "ada"] == [["gpu-admins"]]

        op.update_user("grace", groups=["gpu-users"])  # by rewriting the users file
        claims, info = full_login(op, "grace", "grace-password")
        assert claims["groups"] == ["gpu-users"] and info["groups"] == ["gpu-users"]

        op.reset()
        claims, _ = full_login(op, "ada", "ada-password")
        assert claims["groups"] == ["gpu-users", "ml-team"]

        with pytest.raises(Exception, match="404"):
            op.set_groups("nobody", ["x"])
    assert not op.running


def test_missing_node_modules_gives_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from . import provider as provider_module

    monkeypatch.setattr(provider_module, "OIDC_DIR", tmp_path)
    with pytest.raises(provider_module.OidcProviderError, match="npm ci"):
        OidcProvider().start()
