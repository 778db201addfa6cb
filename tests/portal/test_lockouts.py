"""Issue 11, finding 5: nobody can lock the organisation (or themselves) out by accident."""

import threading
from http import HTTPStatus

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test import RequestFactory

from portal import users as user_actions
from portal.middleware import client_ip
from portal.models import AuditEntry, SsoConfiguration, Team
from portal.roles import Role
from tests.conftest import PASSWORD
from tests.oidc.provider import oidc_provider  # noqa: F401

from .sso_helpers import configure_sso, map_group, sso_login

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def admin_team(org_admin) -> Team:
    return Team.objects.get(name="org_admin group")


# -- the last Org admin ---------------------------------------------------------------------


def test_the_last_org_admin_cannot_leave_the_org_admin_group(admin_client, org_admin, admin_team):
    response = admin_client.post(f"/admin/groups/{admin_team.pk}/members/{org_admin.pk}/remove/")
    assert response.status_code == HTTPStatus.FOUND
    assert org_admin in admin_team.members.all()
    assert b"nobody would be left to manage users" in admin_client.get(response["Location"]).content


def test_an_org_admin_may_leave_while_another_remains(admin_client, org_admin, admin_team):
    other = User.objects.create_user("otto2", "otto2@example.com", PASSWORD)
    admin_team.members.add(other)
    admin_client.post(f"/admin/groups/{admin_team.pk}/members/{org_admin.pk}/remove/")
    assert list(admin_team.members.all()) == [other]


def test_the_last_org_admin_group_cannot_become_a_member_group(admin_client, admin_team):
    response = admin_client.post(
        f"/admin/groups/{admin_team.pk}/edit/", {"name": admin_team.name, "role": Role.MEMBER}
    )
    assert response.status_code == HTTPStatus.OK
    assert b"nobody would be left to manage users" in response.content
    admin_team.refresh_from_db()
    assert admin_team.role == Role.ORG_ADMIN


def test_the_last_org_admin_group_cannot_be_deleted(admin_client, admin_team):
    response = admin_client.post(f"/admin/groups/{admin_team.pk}/delete/")
    assert response.status_code == HTTPStatus.OK
    assert b"nobody would be left to manage users" in response.content
    assert Team.objects.filter(pk=admin_team.pk).exists()


def test_two_org_admins_cannot_deactivate_each_other(org_admin, admin_team):
    other = User.objects.create_user("olaf", "olaf@example.com", PASSWORD)
    admin_team.members.add(other)
    user_actions.deactivate(org_admin, other)
    with pytest.raises(user_actions.LastOrgAdmin):
        user_actions.deactivate(other, org_admin)
    org_admin.refresh_from_db()
    assert org_admin.is_active
    assert list(user_actions.org_admins()) == [org_admin]


@pytest.mark.django_db(transaction=True)
def test_two_org_admins_deactivating_each_other_at_once_leave_one(user_factory):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    first = user_factory("ann", Role.ORG_ADMIN)
    second = user_factory("ben", Role.ORG_ADMIN)
    start = threading.Barrier(2)
    refused = []

    def deactivate(actor, target):
        start.wait()
        try:
            user_actions.deactivate(actor, target)
        except user_actions.LastOrgAdmin:
            refused.append(target.username)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=deactivate, args=(first, second)),
        threading.Thread(target=deactivate, args=(second, first)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(refused) == 1
    assert user_actions.org_admins().count() == 1


def test_a_superuser_counts_as_an_org_admin(org_admin, admin_team):
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    user_actions.remove_member(org_admin, admin_team, org_admin)
    assert not admin_team.members.exists()


def test_okta_dropping_the_last_org_admins_group_keeps_the_membership(oidc_provider, client):  # noqa: F811
    oidc_provider.reset()
    configure_sso(oidc_provider)
    admins = map_group("ml-team", "Admins from Okta", Role.ORG_ADMIN)
    sso_login(client, oidc_provider, "ada", "ada-password")
    ada = User.objects.get(username="ada")
    assert list(user_actions.org_admins()) == [ada]
    client.logout()
    oidc_provider.set_groups("ada", [])
    try:
        sso_login(client, oidc_provider, "ada", "ada-password")
    finally:
        oidc_provider.reset()
    assert ada in admins.members.all()
    entry = AuditEntry.objects.filter(object_id=str(ada.pk), message__contains="kept").get()
    assert "the portal's last Org admin" in entry.message


# -- break-glass administrators -------------------------------------------------------------


def _sso_form(**overrides) -> dict:
    # Saving with SSO on checks the issuer's discovery document: the one of `sso_on`.
    return {
        "enabled": "on",
        "display_name": "Okta",
        "issuer": SsoConfiguration.load().issuer,
        "client_id": "portal",
        "scopes": "openid profile email",
        "local_login_disabled": "on",
        "break_glass_usernames": "olga",
    } | overrides


@pytest.fixture
def sso_on(db, oidc_provider):  # noqa: F811
    config = SsoConfiguration.load()
    config.enabled = True
    config.issuer = oidc_provider.issuer
    config.client_id = "portal"
    config.client_secret = "secret"
    config.save()
    return config


def test_the_break_glass_list_accepts_only_org_admins(admin_client, sso_on, member):
    response = admin_client.post(
        "/admin/sso/", _sso_form(break_glass_usernames="olga, mia, nobody")
    )
    assert response.status_code == HTTPStatus.OK
    assert "Only active Org admins can be break-glass administrators, so not: mia, nobody" in (
        response.content.decode()
    )
    assert not SsoConfiguration.load().local_login_disabled


def test_an_admin_who_would_lock_themselves_out_is_warned(admin_client, sso_on, user_factory):
    user_factory("ada", Role.ORG_ADMIN)
    response = admin_client.post("/admin/sso/", _sso_form(break_glass_usernames="ada"))
    assert response.status_code == HTTPStatus.OK
    assert "You are not on the break-glass list and have never logged in with Okta" in (
        response.content.decode()
    )
    assert not SsoConfiguration.load().local_login_disabled

    confirmed = admin_client.post(
        "/admin/sso/", _sso_form(break_glass_usernames="ada", lock_me_out="on")
    )
    assert confirmed.status_code == HTTPStatus.FOUND
    assert SsoConfiguration.load().local_login_disabled


def test_an_admin_on_the_list_saves_without_a_warning(admin_client, sso_on):
    response = admin_client.post("/admin/sso/", _sso_form(break_glass_usernames="OLGA"))
    assert response.status_code == HTTPStatus.FOUND
    assert SsoConfiguration.load().break_glass() == {"olga"}


@pytest.fixture
def local_login_off(sso_on, org_admin, member):
    sso_on.local_login_disabled = True
    sso_on.break_glass_usernames = "olga"
    sso_on.save()
    return sso_on


@pytest.mark.parametrize("login", ["olga", "olga@example.com", "OLGA@Example.com"])
def test_break_glass_login_works_with_username_or_email(client, local_login_off, login):
    response = client.post("/accounts/login/", {"login": login, "password": PASSWORD})
    assert response.status_code == HTTPStatus.FOUND, response.content[:400]
    assert client.session["_auth_user_id"] == str(User.objects.get(username="olga").pk)


@pytest.mark.parametrize("login", ["mia", "mia@example.com"])
def test_members_stay_refused_by_username_and_email(client, local_login_off, login):
    response = client.post("/accounts/login/", {"login": login, "password": PASSWORD})
    assert b"Password login is turned off" in response.content
    assert "_auth_user_id" not in client.session


def test_an_address_shared_with_a_member_does_not_open_the_break_glass(
    client, local_login_off, member
):
    # Two accounts cannot have one `User.email` (portal 0010), but an unverified allauth
    # address row can name another account's address, and allauth's login by email tries
    # the password on its holder too.
    EmailAddress.objects.create(user=member, email="olga@example.com", verified=False)
    client.post("/accounts/login/", {"login": "olga@example.com", "password": PASSWORD})
    assert "_auth_user_id" not in client.session


REFUSAL = "Password login is turned off for this portal."


@pytest.mark.parametrize("login", ["nobody@example.com", "mia", "olga", "olga@example.com"])
def test_password_login_off_does_not_tell_who_the_break_glass_admins_are(
    client, local_login_off, login
):
    # A break-glass admin's wrong password answers as any refused login: else an anonymous
    # visitor would learn which names and addresses are worth guessing at.
    response = client.post("/accounts/login/", {"login": login, "password": "wrong-guess"})
    assert response.status_code == HTTPStatus.OK
    assert REFUSAL in response.content.decode()


@pytest.mark.parametrize("password", ["wrong-guess", PASSWORD], ids=["wrong", "right"])
def test_refused_password_logins_count_in_the_login_throttle(client, local_login_off, password):
    # Right or wrong, a refused password counts alike, so the throttle tells nothing either.
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": "mia", "password": password})
        assert REFUSAL in response.content.decode()
    blocked = client.post("/accounts/login/", {"login": "mia", "password": password})
    assert blocked.status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_a_demoted_admin_on_the_list_is_refused(client, local_login_off, org_admin):
    Team.objects.filter(name="org_admin group").update(role=Role.OPERATOR)
    client.post("/accounts/login/", {"login": "olga", "password": PASSWORD})
    assert "_auth_user_id" not in client.session


# -- the login throttle behind reverse proxies ----------------------------------------------


def _request(remote: str, forwarded: str | None = None):
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **meta)


@pytest.mark.parametrize(
    ("count", "remote", "forwarded", "expected"),
    [
        (0, "10.0.0.1", "203.0.113.7", "10.0.0.1"),  # no trusted proxy: the header is ignored
        (1, "10.0.0.1", "203.0.113.7", "203.0.113.7"),
        (1, "10.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # a forged left entry
        (2, "10.0.0.2", "203.0.113.7, 10.0.0.1", "203.0.113.7"),
        (2, "10.0.0.2", "203.0.113.7", "10.0.0.2"),  # fewer hops than proxies: not believed
        (1, "10.0.0.1", None, "10.0.0.1"),
        (1, "10.0.0.1", "not-an-address", "10.0.0.1"),
        (1, "10.0.0.1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip_counts_trusted_proxies_from_the_right(
    settings, count, remote, forwarded, expected
):
    settings.TRUSTED_PROXY_COUNT = count
    assert client_ip(_request(remote, forwarded)) == expected


def test_one_client_behind_the_proxy_cannot_block_everyone_elses_password_login(
    client, settings, member
):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for attempt in range(12):
        client.post(
            "/accounts/login/",
            {"login": f"guess{attempt}", "password": "wrong"},
            HTTP_X_FORWARDED_FOR="203.0.113.66",
            **proxy,
        )
    blocked = client.post(
        "/accounts/login/",
        {"login": "guess99", "password": "wrong"},
        HTTP_X_FORWARDED_FOR="203.0.113.66",
        **proxy,
    )
    assert blocked.status_code == HTTPStatus.TOO_MANY_REQUESTS

    response = client.post(
        "/accounts/login/",
        {"login": "mia", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="198.51.100.5",
        **proxy,
    )
    assert response.status_code == HTTPStatus.FOUND
    assert client.session["_auth_user_id"] == str(member.pk)
