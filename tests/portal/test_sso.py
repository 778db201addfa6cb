"""Okta SSO against the real OpenID Connect test provider (no browser: see tests/browser)."""

from http import HTTPStatus

import pytest
from allauth.socialaccount.models import SocialAccount, SocialApp
from django.contrib.auth import get_user_model
from django.core.cache import cache

from portal import users as user_actions
from portal.models import AuditEntry, SsoConfiguration, SsoMembership, Team
from portal.roles import Role
from tests.conftest import PASSWORD

from .sso_helpers import HOST, configure_sso, sso_login

pytestmark = pytest.mark.django_db
User = get_user_model()


def test_sso_app_comes_from_the_configuration_without_a_socialapp_row(op, client):
    assert client.get("/accounts/login/").content.count(b"Log in with Okta") == 0
    configure_sso(op)
    page = client.get("/accounts/login/")
    assert b"Log in with Okta" in page.content
    assert SocialApp.objects.count() == 0


def test_login_start_is_404_while_sso_is_off(client):
    response = client.post("/accounts/oidc/okta/login/", {"process": "login"})
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_first_login_creates_the_user_in_the_mapped_groups(op, client, mapped):
    response = sso_login(client, op, "ada", "ada-password")
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    ada = User.objects.get(username="ada")
    assert ada.email == "ada@example.com"
    assert set(ada.teams.all()) == {mapped["gpu"], mapped["ml"]}
    assert SsoMembership.objects.filter(user=ada).count() == 2
    assert SocialAccount.objects.get(user=ada).uid == "00u-ada"
    assert client.get("/", **HOST).status_code == HTTPStatus.FOUND
    assert AuditEntry.objects.filter(object_repr="ada", message__contains="SSO").exists()


def test_next_login_applies_removed_groups_but_keeps_manual_memberships(op, client, mapped):
    sso_login(client, op, "ada", "ada-password")
    ada = User.objects.get(username="ada")
    manual = Team.objects.create(name="Hand-picked", role=Role.MEMBER)
    manual.members.add(ada)
    op.set_groups("ada", ["gpu-users"])
    client.logout()

    sso_login(client, op, "ada", "ada-password")
    assert set(ada.teams.all()) == {mapped["gpu"], manual}
    assert client.get("/admin/infrastructure/", **HOST).status_code == HTTPStatus.FORBIDDEN


def test_a_manual_membership_in_a_mapped_group_survives_losing_the_okta_group(op, client, mapped):
    ada = User.objects.create_user("ada", "ada@example.com", PASSWORD)
    user_actions.record_verified_email(ada)  # as when an administrator adds the user
    mapped["ml"].members.add(ada)  # added by hand before SSO existed
    op.set_groups("ada", ["gpu-users"])
    sso_login(client, op, "ada", "ada-password")
    # Existing account found by its email address; the hand-made membership is kept.
    assert User.objects.filter(email="ada@example.com").count() == 1
    assert set(ada.teams.all()) == {mapped["gpu"], mapped["ml"]}
    assert not SsoMembership.objects.filter(user=ada, team=mapped["ml"]).exists()


def test_unmapped_user_is_not_created_and_sees_ask_your_administrator(op, client, mapped):
    response = sso_login(client, op, "grace", "grace-password")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/sso/no-access/"
    page = client.get(response["Location"], **HOST)
    assert page.status_code == HTTPStatus.FORBIDDEN
    assert b"ask your administrator" in page.content
    assert not User.objects.filter(username="grace").exists()


def test_known_user_who_lost_every_group_still_logs_in_but_has_no_access(op, client, mapped):
    sso_login(client, op, "ada", "ada-password")
    client.logout()
    op.set_groups("ada", [])
    sso_login(client, op, "ada", "ada-password")
    assert User.objects.get(username="ada").teams.count() == 0
    assert client.get("/workspaces/", **HOST).status_code == HTTPStatus.FORBIDDEN


def test_user_without_email_claim_is_still_created(op, client, mapped):
    op.update_user(
        "nomail",
        id="00u-nomail",
        password="nomail-password",
        groups=["gpu-users"],
        email=None,
        email_verified=False,
        given_name="No",
        family_name="Mail",
    )
    response = sso_login(client, op, "nomail", "nomail-password")
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    user = User.objects.get(username="nomail")
    assert list(user.teams.all()) == [mapped["gpu"]]


def test_deactivated_user_cannot_log_in_with_sso(op, client, mapped):
    sso_login(client, op, "ada", "ada-password")
    client.logout()
    User.objects.filter(username="ada").update(is_active=False)
    response = sso_login(client, op, "ada", "ada-password")
    assert "_auth_user_id" not in client.session
    assert response.status_code in (HTTPStatus.OK, HTTPStatus.FOUND)


# -- local login switched off -------------------------------------------------------------------


@pytest.fixture
def local_login_off(op, org_admin, member):
    cache.clear()
    return configure_sso(op, local_login_disabled=True, break_glass_usernames="olga")


def test_local_login_off_refuses_passwords_except_break_glass(client, local_login_off):
    refused = client.post("/accounts/login/", {"login": "mia", "password": PASSWORD})
    assert refused.status_code == HTTPStatus.OK
    assert b"Password login is turned off" in refused.content
    assert b"Log in with Okta" in refused.content
    assert "_auth_user_id" not in client.session

    allowed = client.post("/accounts/login/", {"login": "olga", "password": PASSWORD})
    assert allowed.status_code == HTTPStatus.FOUND
    assert client.session["_auth_user_id"] == str(User.objects.get(username="olga").pk)


def test_local_login_off_needs_a_break_glass_admin(admin_client, op):
    configure_sso(op)
    response = admin_client.post(
        "/admin/sso/",
        {
            "enabled": "on",
            "display_name": "Okta",
            "issuer": op.issuer,
            "client_id": op.client_id,
            "scopes": "openid profile email",
            "local_login_disabled": "on",
            "break_glass_usernames": "",
        },
    )
    assert response.status_code == HTTPStatus.OK
    assert b"break-glass" in response.content
    assert not SsoConfiguration.load().local_login_disabled


def test_sso_settings_keep_the_secret_encrypted_and_out_of_the_page(admin_client, op):
    response = admin_client.post(
        "/admin/sso/",
        {
            "enabled": "on",
            "display_name": "Okta",
            "issuer": op.issuer,
            "client_id": op.client_id,
            "client_secret": "s3cret-value",
            "scopes": "openid profile email groups",
        },
    )
    assert response.status_code == HTTPStatus.FOUND
    config = SsoConfiguration.load()
    assert config.client_secret == "s3cret-value"
    page = admin_client.get("/admin/sso/")
    assert b"s3cret-value" not in page.content
    assert b"/accounts/oidc/okta/login/callback/" in page.content
    entry = AuditEntry.objects.filter(object_repr="Okta SSO").latest("id")
    assert "s3cret-value" not in str(entry.after)


def test_mappings_are_managed_on_the_sso_page(admin_client):
    team = Team.objects.create(name="Data science")
    response = admin_client.post("/admin/sso/mappings/add/", {"sso_group": "ds", "team": team.pk})
    assert response.status_code == HTTPStatus.FOUND
    mapping = team.sso_mappings.get()
    assert mapping.sso_group == "ds"
    admin_client.post(f"/admin/sso/mappings/{mapping.pk}/delete/")
    assert not team.sso_mappings.exists()
    assert AuditEntry.objects.filter(object_repr__startswith="ds →").count() == 2


def test_viewer_sees_sso_settings_but_cannot_change_them(client, viewer):
    client.force_login(viewer)
    assert client.get("/admin/sso/").status_code == HTTPStatus.OK
    response = client.post("/admin/sso/", {"enabled": "on"})
    assert response.status_code == HTTPStatus.FORBIDDEN


def test_invitation_accepted_with_okta_joins_the_invited_groups(op, client, org_admin):
    from datetime import timedelta

    from django.utils import timezone

    from portal import invitations
    from portal.models import Invitation

    configure_sso(op)  # no mapping at all: only the invitation lets ada in
    team = Team.objects.create(name="Invited group", role=Role.MEMBER)
    invitation = Invitation.objects.create(
        email="ada@example.com",
        invited_by=org_admin,
        token_hash=invitations._hash("tok"),
        expires_at=timezone.now() + timedelta(days=1),
    )
    invitation.groups.add(team)
    page = client.get(f"/invitation/{invitation.pk}/tok/", **HOST)
    assert b"Continue with Okta" in page.content
    response = sso_login(
        client, op, "ada", "ada-password", start_path=f"/invitation/{invitation.pk}/tok/", sso="1"
    )
    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    ada = User.objects.get(username="ada")
    assert list(ada.teams.all()) == [team]
    invitation.refresh_from_db()
    assert invitation.accepted_by == ada
    assert client.get(f"/invitation/{invitation.pk}/tok/", **HOST).status_code == HTTPStatus.GONE
