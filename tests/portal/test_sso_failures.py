"""SSO that explains itself, against the real OpenID Connect test provider (tests/oidc).

Saving the settings checks the issuer's discovery document; every failed login is a page
with the reason and a way back, is logged and audited, and is never a 500; a login without
a groups claim is refused instead of stripping memberships.
"""

import json
import logging
import socket
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from portal import sso
from portal.models import AuditEntry, SsoConfiguration, SsoMembership
from portal.roles import Role
from tests.oidc.provider import OidcProvider

from .sso_helpers import CALLBACK_PREFIX, HOST, configure_sso, map_group, sso_login

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def stopped_provider():
    """A real provider process, started then stopped: its issuer no longer answers."""
    provider = OidcProvider().start()
    issuer, client_id, secret = provider.issuer, provider.client_id, provider.client_secret
    provider.stop()
    return {"issuer": issuer, "client_id": client_id, "client_secret": secret}


class _Answer(BaseHTTPRequestHandler):
    body = b""
    content_type = "text/html"

    def do_GET(self):
        issuer = f"http://127.0.0.1:{self.server.server_port}/oauth2/default"
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.end_headers()
        self.wfile.write(self.body.replace(b"{issuer}", issuer.encode()))

    def log_message(self, *args):
        pass


@pytest.fixture
def web_server():
    """A plain HTTP server answering every GET with 200 and the given body ({issuer}: the
    issuer URL it is served as)."""
    servers = []

    def serve(body: bytes, content_type: str) -> str:
        handler = type("Handler", (_Answer,), {"body": body, "content_type": content_type})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/oauth2/default"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_form(issuer: str, **overrides) -> dict:
    return {
        "enabled": "on",
        "display_name": "Okta",
        "issuer": issuer,
        "client_id": "portal-test",
        "client_secret": "portal-test-secret",
        "scopes": "openid profile email groups",
    } | overrides


def failures() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(message__startswith="SSO login failed"))


# -- saving the settings --------------------------------------------------------------------


def test_saving_sso_fetches_the_discovery_document(admin_client, op):
    response = admin_client.post("/admin/sso/", settings_form(op.issuer))
    assert response.status_code == HTTPStatus.FOUND
    assert SsoConfiguration.load().is_usable


@pytest.mark.parametrize(
    ("issuer", "problem"),
    [
        (lambda op, serve: f"http://127.0.0.1:{free_port()}/oauth2/default", "was refused"),
        (lambda op, serve: serve(b"<html>login</html>", "text/html"), "did not answer JSON"),
        (
            lambda op, serve: serve(json.dumps({"issuer": "x"}).encode(), "application/json"),
            "names the issuer “x”",
        ),
        (
            # The provider names itself http://127.0.0.1:…, not http://localhost:….
            lambda op, serve: op.issuer.replace("127.0.0.1", "localhost"),
            "names the issuer “http://127.0.0.1:",
        ),
        (lambda op, serve: op.issuer + "/wrong", "answered HTTP 404"),
    ],
    ids=["unreachable", "not-json", "other-issuer", "mismatch", "not-found"],
)
def test_saving_sso_shows_what_is_wrong_with_the_issuer(
    admin_client, op, web_server, issuer, problem
):
    url = issuer(op, web_server)
    response = admin_client.post("/admin/sso/", settings_form(url))
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert problem in page
    assert "Nothing was saved: SSO stays as it was." in page
    assert not SsoConfiguration.load().enabled


def test_a_refused_save_leaves_the_page_saying_sso_is_off(admin_client, op):
    configure_sso(op, enabled=False)  # set up once, then switched off
    unreachable = f"http://127.0.0.1:{free_port()}/oauth2/default"
    response = admin_client.post("/admin/sso/", settings_form(unreachable))
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert "Nothing was saved: SSO stays as it was." in page
    assert not SsoConfiguration.load().enabled
    assert "Status: <strong>off</strong>" in page
    assert f'value="{unreachable}"' in page  # the form still shows what was posted


def test_a_discovery_document_without_endpoints_is_refused(admin_client, web_server):
    url = web_server(b'{"issuer": "{issuer}", "token_endpoint": "x"}', "application/json")
    response = admin_client.post("/admin/sso/", settings_form(url))
    assert response.status_code == HTTPStatus.OK
    assert "lacks authorization_endpoint, jwks_uri" in response.content.decode()


@pytest.mark.parametrize(
    "issuer",
    [
        "http://a..b/oauth2",
        "http://" + "a" * 300 + ".com/oauth2",
        "http://127.0.0.1:99999/oauth2",
        "http://\u2603.invalid/oauth2",
    ],
)
def test_an_address_that_cannot_be_fetched_is_a_problem_not_an_exception(issuer):
    # Stored before this check existed, or typed by hand: the login start reads it too.
    with pytest.raises(sso.IssuerProblem):
        sso.discover(issuer)


def test_saving_with_sso_off_does_not_fetch_anything(admin_client):
    unreachable = f"http://127.0.0.1:{free_port()}/oauth2/default"
    response = admin_client.post("/admin/sso/", settings_form(unreachable, enabled=""))
    assert response.status_code == HTTPStatus.FOUND


DISCOVERY = b"""{"issuer": "{issuer}", "authorization_endpoint": "{issuer}/v1/authorize",
"token_endpoint": "{issuer}/v1/token", "jwks_uri": "{issuer}/v1/keys"}"""


def test_a_new_issuer_needs_the_client_secret_again(admin_client, op, web_server):
    # Kept, the stored secret would go to the new issuer's token endpoint at the next login.
    configure_sso(op)
    other = web_server(DISCOVERY, "application/json")

    response = admin_client.post("/admin/sso/", settings_form(other, client_secret=""))

    assert response.status_code == HTTPStatus.OK
    assert "The issuer changed: enter the client secret" in response.content.decode()
    config = SsoConfiguration.load()
    assert (config.issuer, config.client_secret) == (op.issuer, op.client_secret)

    entered = admin_client.post("/admin/sso/", settings_form(other, client_secret="new-secret"))
    assert entered.status_code == HTTPStatus.FOUND
    config = SsoConfiguration.load()
    assert (config.issuer, config.client_secret) == (other, "new-secret")


def test_a_new_issuer_saved_with_sso_off_drops_the_stored_secret(admin_client, op):
    configure_sso(op)
    elsewhere = f"http://127.0.0.1:{free_port()}/oauth2/default"
    form = settings_form(elsewhere, enabled="", client_secret="")
    assert admin_client.post("/admin/sso/", form).status_code == HTTPStatus.FOUND
    assert SsoConfiguration.load().client_secret == ""


def test_the_same_issuer_keeps_the_stored_secret(admin_client, op):
    configure_sso(op)
    form = settings_form(op.issuer + "/", client_id=op.client_id, client_secret="")
    assert admin_client.post("/admin/sso/", form).status_code == HTTPStatus.FOUND
    assert SsoConfiguration.load().client_secret == op.client_secret


@pytest.mark.parametrize(
    ("scopes", "error"),
    [("profile email groups", "Keep “openid”"), ('openid "groups"', "Not a scope")],
)
def test_scopes_keep_openid_and_are_scope_tokens(admin_client, op, scopes, error):
    response = admin_client.post("/admin/sso/", settings_form(op.issuer, scopes=scopes))
    assert response.status_code == HTTPStatus.OK
    assert error in response.content.decode()


def test_default_scopes_ask_for_groups(op, client):
    assert SsoConfiguration.load().scopes == "openid profile email groups"
    configure_sso(op)
    start = client.post("/accounts/oidc/okta/login/", {"process": "login"}, **HOST)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(start["Location"]).query)
    assert set(query["scope"][0].split()) == {"openid", "profile", "email", "groups"}


# -- starting the login ---------------------------------------------------------------------


def test_log_in_with_okta_on_a_stopped_provider_is_a_page_not_a_500(
    client, stopped_provider, caplog
):
    config = SsoConfiguration.load()
    for name, value in stopped_provider.items():
        setattr(config, name, value)
    config.enabled = True
    config.save()
    assert b"Log in with Okta" in client.get("/accounts/login/").content
    with caplog.at_level(logging.WARNING, logger="portal.sso"):
        response = client.post("/accounts/oidc/okta/login/", {"process": "login"}, **HOST)
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    page = response.content.decode()
    assert "Okta cannot be reached" in page
    assert "the connection was refused" in page
    assert 'href="/accounts/login/"' in page
    assert "SSO login failed (issuer)" in caplog.text
    [entry] = failures()
    assert entry.after["failure"] == "issuer"
    assert "_auth_user_id" not in client.session


def test_a_flood_of_failures_is_logged_each_time_but_audited_once_a_minute(
    client, stopped_provider, caplog
):
    config = SsoConfiguration.load()
    for name, value in stopped_provider.items():
        setattr(config, name, value)
    config.enabled = True
    config.save()
    cache.clear()
    with caplog.at_level(logging.WARNING, logger="portal.sso"):
        for _ in range(3):
            client.post("/accounts/oidc/okta/login/", {"process": "login"}, **HOST)
    assert caplog.text.count("SSO login failed (issuer)") == 3
    assert len(failures()) == 1


# -- finishing the login --------------------------------------------------------------------


def test_a_wrong_client_secret_says_so(op, client, caplog):
    configure_sso(op, client_secret="not-the-secret")
    map_group("gpu-users", "GPU users", Role.MEMBER)
    with caplog.at_level(logging.WARNING, logger="portal.sso"):
        response = sso_login(client, op, "ada", "ada-password")
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    page = response.content.decode()
    assert "Okta refused the portal" in page
    assert "client ID or client secret" in page
    assert "audit log" in page
    assert "SSO login failed (client_rejected)" in caplog.text
    assert "invalid_client" in failures()[0].after["detail"]
    assert not User.objects.filter(username="ada").exists()


def test_a_forged_callback_is_a_state_mismatch_page(op, client, mapped):
    response = client.get(
        "/accounts/oidc/okta/login/callback/",
        {"state": "forged", "code": "x", "error": "access_denied", "error_description": "lies"},
        **HOST,
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    page = response.content.decode()
    assert "This sign-in expired" in page
    assert "lies" not in page  # Okta's words count only when the state matched
    assert failures()[0].after["failure"] == "state"


def test_okta_refusing_the_user_is_explained(op, client, mapped):
    start = client.post("/accounts/oidc/okta/login/", {"process": "login"}, **HOST)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(start["Location"]).query)["state"][0]
    # What Okta sends back when the application is not assigned to the user.
    response = client.get(
        urllib.parse.urlsplit(CALLBACK_PREFIX).path,
        {
            "state": state,
            "error": "access_denied",
            "error_description": "User is not assigned to the client application.",
        },
        **HOST,
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    page = response.content.decode()
    assert "Okta did not sign you in" in page
    assert "User is not assigned to the client application." in page
    assert failures()[0].after["failure"] == "denied"


def test_a_login_without_a_groups_claim_is_refused_and_keeps_the_memberships(
    op, client, mapped, caplog
):
    sso_login(client, op, "ada", "ada-password")
    ada = User.objects.get(username="ada")
    assert ada.teams.count() == 2
    client.logout()
    op.update_user("ada", groups=None)  # the provider now sends no groups claim at all
    with caplog.at_level(logging.WARNING, logger="portal.sso"):
        response = sso_login(client, op, "ada", "ada-password")
    assert response.status_code == HTTPStatus.FORBIDDEN
    page = response.content.decode()
    assert "Okta sent no groups" in page
    assert "rather than take your access away" in page
    assert "_auth_user_id" not in client.session
    assert set(ada.teams.all()) == {mapped["gpu"], mapped["ml"]}
    assert SsoMembership.objects.filter(user=ada).count() == 2
    assert "SSO login failed (no_groups_claim)" in caplog.text
    assert failures()[0].after["user"] == "ada"


def test_a_new_user_without_a_groups_claim_is_refused_too(op, client, mapped):
    op.update_user("ada", groups=None)
    response = sso_login(client, op, "ada", "ada-password")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "Okta sent no groups" in response.content.decode()
    assert not User.objects.filter(username="ada").exists()


def test_connect_without_a_groups_claim_keeps_the_sso_memberships(op, client, mapped):
    # A connect (linking an Okta account to the logged-in user) is not a login: it is not
    # refused for want of a groups claim, and so must not apply the mapping either.
    sso_login(client, op, "ada", "ada-password")
    ada = User.objects.get(username="ada")
    assert set(ada.teams.all()) == {mapped["gpu"], mapped["ml"]}
    op.update_user("ada", groups=None)
    op.clear_sessions()

    sso_login(client, op, "ada", "ada-password", process="connect")

    assert set(ada.teams.all()) == {mapped["gpu"], mapped["ml"]}
    assert SsoMembership.objects.filter(user=ada).count() == 2


def test_without_any_mapping_the_groups_claim_is_not_needed(op, client):
    configure_sso(op)  # groups are not used: only invitations let people in
    op.update_user("ada", groups=None)
    response = sso_login(client, op, "ada", "ada-password")
    assert response["Location"] == "/sso/no-access/"


def test_a_user_whose_groups_no_longer_map_lands_on_ask_your_administrator(op, client, mapped):
    sso_login(client, op, "ada", "ada-password")
    client.logout()
    op.set_groups("ada", ["unmapped"])
    response = sso_login(client, op, "ada", "ada-password")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/sso/no-access/"
    assert client.session["_auth_user_id"] == str(User.objects.get(username="ada").pk)
    page = client.get(response["Location"], **HOST)
    assert page.status_code == HTTPStatus.FORBIDDEN
    assert b"ask your administrator" in page.content
    assert b"You signed in with Okta" in page.content
    assert b'action="/accounts/logout/"' in page.content
    # Any page they open next says the same, not a bare 403.
    forbidden = client.get("/workspaces/", **HOST)
    assert forbidden.status_code == HTTPStatus.FORBIDDEN
    assert b"ask your administrator" in forbidden.content
