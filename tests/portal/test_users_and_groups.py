import re
from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core import mail
from django.core.cache import cache
from django.test import Client

from portal.models import AuditEntry, Invitation, SsoMembership, Team
from portal.roles import Role
from portal.user_forms import UserAddForm
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
User = get_user_model()
NEW_PASSWORD = "a-long-and-unusual-passphrase"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


def test_user_list_shows_groups_and_last_login(admin_client, member):
    page = admin_client.get("/admin/users/")
    assert page.status_code == HTTPStatus.OK
    assert b"mia" in page.content and b"member group" in page.content
    assert b"Never" in page.content


def test_viewer_may_read_users_but_not_add(client, viewer, member):
    client.force_login(viewer)
    assert client.get("/admin/users/").status_code == HTTPStatus.OK
    assert client.get(f"/admin/users/{member.pk}/").status_code == HTTPStatus.OK
    assert client.get("/admin/users/add/").status_code == HTTPStatus.FORBIDDEN
    assert client.post(f"/admin/users/{member.pk}/deactivate/").status_code == 403


def test_operator_may_not_manage_users(client, operator):
    client.force_login(operator)
    assert client.get("/admin/users/").status_code == HTTPStatus.FORBIDDEN


def test_add_user_with_password(admin_client):
    team = Team.objects.create(name="Data science")
    response = admin_client.post(
        "/admin/users/add/",
        {
            "username": "newbie",
            "email": "New@Example.com",
            "groups": [team.pk],
            "password": "a-long-and-unusual-passphrase",
        },
    )
    assert response.status_code == HTTPStatus.FOUND
    user = User.objects.get(username="newbie")
    assert user.email == "new@example.com"
    assert list(user.teams.all()) == [team]
    assert user.check_password("a-long-and-unusual-passphrase")
    entry = AuditEntry.objects.get(object_repr="newbie")
    assert entry.after["groups"] == ["Data science"]
    assert "password" not in entry.after


def test_add_user_rejects_weak_passwords_and_taken_names(admin_client, member):
    response = admin_client.post(
        "/admin/users/add/", {"username": "MIA", "email": "x@example.com", "password": "123"}
    )
    assert response.status_code == HTTPStatus.OK
    assert b"taken" in response.content and b"too short" in response.content


def test_an_address_too_long_to_store_is_refused_next_to_the_field(admin_client):
    # Valid (EmailValidator takes up to 320 characters), but User.email holds 254.
    long_email = "a" * 60 + "@" + ("b" * 60 + ".") * 4 + "com"
    response = admin_client.post("/admin/users/add/", {"username": "longmail", "email": long_email})
    assert response.status_code == HTTPStatus.OK
    assert b"at most 254 characters" in response.content
    assert not User.objects.filter(username="longmail").exists()


@pytest.mark.parametrize(
    ("username", "error"),
    [
        # Nine U+FDFA ligatures: 9 characters as typed, 162 as Django stores them (NFKC).
        ("\ufdfa" * 9, b"at most 150 characters as stored; this one becomes 162"),
        ("\uff2d\uff29\uff21", b"This username is taken"),  # fullwidth "MIA"
    ],
    ids=["expands-past-150", "fullwidth-case-twin"],
)
def test_add_user_checks_the_username_as_it_will_be_stored(admin_client, member, username, error):
    response = admin_client.post(
        "/admin/users/add/", {"username": username, "email": "x@example.com"}
    )
    assert response.status_code == HTTPStatus.OK
    assert error in response.content
    assert not User.objects.filter(email="x@example.com").exists()


def test_a_username_taken_meanwhile_is_a_message_not_a_500(admin_client, member, monkeypatch):
    # As if another request created "mia" between the form's check and the insert.
    monkeypatch.setattr(UserAddForm, "clean_username", lambda form: form.cleaned_data["username"])
    response = admin_client.post("/admin/users/add/", {"username": "mia", "email": "x@example.com"})
    assert response.status_code == HTTPStatus.OK
    assert b"This username is taken; choose another." in response.content
    assert not User.objects.filter(email="x@example.com").exists()


def test_add_user_by_invitation(admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/users/add/",
            {"username": "ignored", "email": "inv@example.com", "send_invitation": "on"},
        )
    assert response["Location"] == "/admin/invitations/"
    assert Invitation.objects.get().email == "inv@example.com"
    assert not User.objects.filter(username="ignored").exists()
    assert len(mail.outbox) == 1


def test_deactivate_ends_sessions_and_keeps_history(admin_client, member):
    browser = Client()
    browser.post("/accounts/login/", {"login": "mia", "password": PASSWORD})
    assert Session.objects.count() == 2
    response = admin_client.post(f"/admin/users/{member.pk}/deactivate/")
    assert response.status_code == HTTPStatus.FOUND
    member.refresh_from_db()
    assert not member.is_active
    assert Session.objects.count() == 1  # the admin's own
    assert browser.get("/workspaces/").status_code == HTTPStatus.FOUND  # back to login
    assert member.teams.exists()  # memberships kept
    entry = AuditEntry.objects.filter(object_repr="mia").latest("id")
    assert entry.before["is_active"] is True and entry.after["is_active"] is False

    refused = Client().post("/accounts/login/", {"login": "mia", "password": PASSWORD})
    assert "_auth_user_id" not in refused.wsgi_request.session

    admin_client.post(f"/admin/users/{member.pk}/reactivate/")
    member.refresh_from_db()
    assert member.is_active


def test_admin_cannot_deactivate_themselves(admin_client, org_admin):
    admin_client.post(f"/admin/users/{org_admin.pk}/deactivate/")
    org_admin.refresh_from_db()
    assert org_admin.is_active


# -- groups ---------------------------------------------------------------------------------


def test_group_form_edits_access_lists_and_quotas(
    admin_client, local_infrastructure, profile_factory
):
    profile = profile_factory(local_infrastructure, name="Small")
    response = admin_client.post(
        "/admin/groups/add/",
        {
            "name": "Research",
            "role": Role.MEMBER,
            "compute_profiles": [profile.pk],
            "max_gpus": "4",
            "max_mig_slices": "7",
            "max_workspaces": "2",
            "max_lifetime_hours": "",
        },
    )
    assert response.status_code == HTTPStatus.FOUND, response.content[:2000]
    team = Team.objects.get(name="Research")
    assert list(team.compute_profiles.all()) == [profile]
    assert (team.max_gpus, team.max_mig_slices, team.max_workspaces) == (4, 7, 2)
    assert team.max_lifetime_hours is None
    page = admin_client.get(f"/admin/groups/{team.pk}/")
    assert b"Small" in page.content and b"Unlimited" in page.content
    entry = AuditEntry.objects.get(object_repr="Research")
    assert entry.after["max_gpus"] == 4 and entry.after["compute_profiles"] == ["Small"]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("max_lifetime_hours", "87601", "At most 87600 hours (ten years)."),
        ("max_lifetime_hours", "2147483647", "At most 87600 hours (ten years)."),
        ("idle_stop_hours", "8761", "At most 8760 hours (a year)."),
    ],
)
def test_group_form_bounds_the_hours_next_to_the_field(admin_client, field, value, error):
    # Beyond the bound, "now + hours" would soon leave the calendar.
    response = admin_client.post(
        "/admin/groups/add/", {"name": "Research", "role": Role.MEMBER, field: value}
    )
    assert response.status_code == HTTPStatus.OK
    assert error in response.content.decode()
    assert not Team.objects.filter(name="Research").exists()


def test_members_are_added_and_removed_on_the_group_page(admin_client, member):
    team = Team.objects.create(name="Research")
    response = admin_client.post(f"/admin/groups/{team.pk}/members/add/", {"user": member.pk})
    assert response.status_code == HTTPStatus.FOUND
    assert list(team.members.all()) == [member]
    assert b"Remove" in admin_client.get(f"/admin/groups/{team.pk}/").content
    admin_client.post(f"/admin/groups/{team.pk}/members/{member.pk}/remove/")
    assert not team.members.exists()
    entries = AuditEntry.objects.filter(object_repr="Research").order_by("id")
    assert [e.after["members"] for e in entries] == [["mia"], []]


def test_adding_by_hand_turns_an_sso_membership_into_a_manual_one(admin_client, member):
    team = Team.objects.create(name="Research")
    SsoMembership.objects.create(user=member, team=team)
    admin_client.post(f"/admin/groups/{team.pk}/members/add/", {"user": member.pk})
    assert not SsoMembership.objects.exists()


def test_member_cannot_manage_members(client, member):
    team = Team.objects.create(name="Research")
    client.force_login(member)
    response = client.post(f"/admin/groups/{team.pk}/members/add/", {"user": member.pk})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not team.members.exists()


# -- login ----------------------------------------------------------------------------------


def test_password_login_and_logout(client, member):
    response = client.post("/accounts/login/", {"login": "mia", "password": PASSWORD})
    assert response.status_code == HTTPStatus.FOUND
    assert client.get("/workspaces/").status_code == HTTPStatus.OK
    client.post("/accounts/logout/")
    assert client.get("/workspaces/").status_code == HTTPStatus.FOUND


def test_sixth_bad_password_is_refused_with_429(client, member):
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": "mia", "password": "wrong"})
        assert response.status_code == HTTPStatus.OK
    response = client.post("/accounts/login/", {"login": "mia", "password": PASSWORD})
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "_auth_user_id" not in client.session


def test_password_reset_sends_a_link(client, member):
    response = client.post("/accounts/password/reset/", {"email": member.email})
    assert response.status_code == HTTPStatus.FOUND
    assert len(mail.outbox) == 1 and "/accounts/password/reset/key/" in mail.outbox[0].body


def test_changing_a_password_is_audited(client, member):
    client.force_login(member)
    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == HTTPStatus.FOUND
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)
    entry = AuditEntry.objects.get(object_repr="mia")
    assert (entry.actor, entry.message) == (member, "Password changed")
    assert NEW_PASSWORD not in str(entry.before) + str(entry.after)


def test_resetting_a_password_is_audited(client, member):
    client.post("/accounts/password/reset/", {"email": member.email})
    link = re.search(r"http://[^/\s]+(/accounts/password/reset/key/\S+/)", mail.outbox[0].body)
    form_page = client.get(link[1])  # allauth moves the key into the session, then redirects
    assert form_page.status_code == HTTPStatus.FOUND
    response = client.post(
        form_page["Location"], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == HTTPStatus.FOUND
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)
    assert AuditEntry.objects.get(object_repr="mia").message == "Password changed"


def test_login_form_needs_csrf(member):
    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/accounts/login/", {"login": "mia", "password": PASSWORD})
    assert response.status_code == HTTPStatus.FORBIDDEN


def test_session_expires_with_the_browser_and_cookie_age_is_set(client, member, settings):
    client.post("/accounts/login/", {"login": "mia", "password": PASSWORD})
    assert client.session.get_expire_at_browser_close()
    assert settings.SESSION_COOKIE_AGE == 8 * 3600
    assert settings.SESSION_COOKIE_HTTPONLY
