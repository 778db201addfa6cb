import re
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone

from portal import invitations
from portal.models import AuditEntry, Invitation, Team
from portal.roles import Role

pytestmark = pytest.mark.django_db
User = get_user_model()
NEW_PASSWORD = "a-long-and-unusual-passphrase"


@pytest.fixture
def team(db):
    return Team.objects.create(name="Data science", role=Role.MEMBER)


def invite(admin_client, team, email="new@example.com"):
    response = admin_client.post("/admin/invitations/add/", {"email": email, "groups": [team.pk]})
    assert response.status_code == HTTPStatus.FOUND, response.content[:500]
    return Invitation.objects.get(email=email)


def link_path(message) -> str:
    match = re.search(r"https?://[^/\s]+(/invitation/\d+/[^/\s]+/)", message.body)
    assert match, message.body
    return match.group(1)


@pytest.fixture
def sent(admin_client, team, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invitation = invite(admin_client, team)
    assert len(mail.outbox) == 1
    return invitation, link_path(mail.outbox[0])


def accept(client, path, username="newbie", password=NEW_PASSWORD):
    return client.post(path, {"username": username, "password1": password, "password2": password})


def test_invitation_email_names_the_inviter_and_the_link(sent):
    invitation, _ = sent
    message = mail.outbox[0]
    assert message.to == ["new@example.com"]
    assert "olga" in message.body
    assert "Data science" in message.body
    assert invitation.token_hash not in message.body  # only the hash is stored


def test_accept_page_shows_who_invited(client, sent):
    _, path = sent
    page = client.get(path)
    assert page.status_code == HTTPStatus.OK
    assert b"olga" in page.content and b"new@example.com" in page.content


def test_accepting_creates_the_user_in_the_groups_and_lands_on_self_service(client, sent, team):
    invitation, path = sent
    response = accept(client, path)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/workspaces/"
    user = User.objects.get(username="newbie")
    assert user.email == "new@example.com"
    assert list(user.teams.all()) == [team]
    assert user.check_password(NEW_PASSWORD)
    assert client.session["_auth_user_id"] == str(user.pk)
    invitation.refresh_from_db()
    assert invitation.accepted_by == user and invitation.accepted_at
    assert AuditEntry.objects.filter(object_repr="new@example.com", message__contains="accepted")


def test_weak_password_is_refused_by_django_validators(client, sent):
    _, path = sent
    response = accept(client, path, password="12345678")
    assert response.status_code == HTTPStatus.OK
    assert not User.objects.filter(username="newbie").exists()
    assert b"too common" in response.content or b"entirely numeric" in response.content


def test_reused_link_gets_410(client, sent):
    _, path = sent
    accept(client, path)
    client.logout()
    again = client.get(path)
    assert again.status_code == HTTPStatus.GONE
    assert b"already been used" in again.content
    assert accept(client, path, username="second").status_code == HTTPStatus.GONE
    assert not User.objects.filter(username="second").exists()


def test_expired_link_gets_410(client, sent):
    invitation, path = sent
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(1))
    response = client.get(path)
    assert response.status_code == HTTPStatus.GONE
    assert b"expired" in response.content
    assert accept(client, path).status_code == HTTPStatus.GONE


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: p[:-2] + ("A/" if p[-2] != "A" else "B/"),  # one character of the token
        lambda p: re.sub(r"/invitation/(\d+)/", lambda m: f"/invitation/{int(m[1]) + 1}/", p),
        lambda p: re.sub(r"/invitation/(\d+)/[^/]+/", r"/invitation/\1/garbage/", p),
    ],
    ids=["token-changed", "other-id", "garbage"],
)
def test_tampered_link_gets_400(client, sent, tamper):
    _, path = sent
    response = client.get(tamper(path))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"not valid" in response.content
    assert accept(client, tamper(path)).status_code == HTTPStatus.BAD_REQUEST


def test_revoked_link_gets_410(admin_client, client, sent):
    invitation, path = sent
    assert admin_client.post(f"/admin/invitations/{invitation.pk}/revoke/").status_code == 302
    response = client.get(path)
    assert response.status_code == HTTPStatus.GONE
    assert b"withdrawn" in response.content


def test_resend_kills_the_old_link(admin_client, client, sent, django_capture_on_commit_callbacks):
    invitation, old_path = sent
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/invitations/{invitation.pk}/resend/")
    assert response.status_code == HTTPStatus.FOUND
    new_path = link_path(mail.outbox[1])
    assert new_path != old_path
    assert client.get(old_path).status_code == HTTPStatus.BAD_REQUEST
    assert accept(client, new_path).status_code == HTTPStatus.FOUND


def test_accept_is_single_use_even_when_racing(sent):
    invitation, _ = sent
    first = User.objects.create_user("first")
    second = User.objects.create_user("second")
    assert invitations.accept(invitation, first) is True
    assert invitations.accept(invitation, second) is False
    assert list(second.teams.all()) == []


def test_list_shows_status_and_actions_only_to_org_admins(admin_client, client, viewer, sent):
    page = admin_client.get("/admin/invitations/")
    assert b"pending" in page.content and b"Revoke" in page.content
    client.force_login(viewer)
    page = client.get("/admin/invitations/")
    assert page.status_code == HTTPStatus.OK
    assert b"new@example.com" in page.content and b"Revoke" not in page.content
    invitation, _ = sent
    assert client.post(f"/admin/invitations/{invitation.pk}/revoke/").status_code == 403


def test_cannot_invite_an_existing_users_address(admin_client, member, team):
    response = admin_client.post(
        "/admin/invitations/add/", {"email": member.email, "groups": [team.pk]}
    )
    assert response.status_code == HTTPStatus.OK
    assert b"already exists" in response.content


def test_invitation_list_shows_pending_ones_with_their_actions(admin_client, team):
    for email in ("b@example.com", "a@example.com"):
        invite(admin_client, team, email)
    page = admin_client.get("/admin/invitations/?sort=email")
    assert page.status_code == HTTPStatus.OK
    html = page.content.decode()
    html = html[html.index("<table") :]  # past the "invitation sent" messages
    assert html.index("a@example.com") < html.index("b@example.com")
    assert "1–2 of 2" in html
    assert html.count("csrfmiddlewaretoken") >= 4  # resend and revoke, per invitation
    assert 'aria-sort="ascending"' in html


def test_invitation_list_says_when_there_are_none(admin_client):
    page = admin_client.get("/admin/invitations/?page=7")
    assert b"No invitations yet." in page.content
