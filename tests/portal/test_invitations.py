import re
from datetime import timedelta
from http import HTTPStatus
from smtplib import SMTPServerDisconnected

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core import mail
from django.core.cache import cache
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal import invitations
from portal.models import AuditEntry, Invitation, Team
from portal.roles import Role
from portal.user_forms import AcceptInvitationForm
from tests.conftest import PASSWORD, turn_password_login_off

pytestmark = pytest.mark.django_db
User = get_user_model()
NEW_PASSWORD = "a-long-and-unusual-passphrase"
# A valid address of 308 characters: more than User.email and Invitation.email (254) hold.
LONG_EMAIL = "a" * 60 + "@" + ("b" * 60 + ".") * 4 + "com"
# Nine U+FDFA ligatures: 9 characters as typed, 162 once NFKC-normalised as Django stores it.
EXPANDING_USERNAME = "\ufdfa" * 9


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


def test_the_access_log_does_not_write_the_invitation_token(client, sent, caplog):
    """The database keeps only the token's hash; whoever reads the logs must not be able to
    accept the invitation, with the roles it grants, before the invitee does."""
    invitation, path = sent
    token = path.rstrip("/").rsplit("/", 1)[1]
    with caplog.at_level("INFO", logger="portal.access"):
        assert client.get(path).status_code == HTTPStatus.OK
        accept(client, path, password="weak")
    logged = [r.getMessage() for r in caplog.records if r.name == "portal.access"]
    assert [line.rsplit(" ", 2)[0] for line in logged] == [
        f"GET /invitation/{invitation.pk}/redacted/ 200",
        f"POST /invitation/{invitation.pk}/redacted/ 200",
    ]
    assert not [line for line in logged if token in line], logged


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


def test_an_address_too_long_to_store_is_refused_next_to_the_field(admin_client, team):
    # Valid (EmailValidator takes up to 320 characters), but the column holds 254.
    response = admin_client.post(
        "/admin/invitations/add/", {"email": LONG_EMAIL, "groups": [team.pk]}
    )
    assert response.status_code == HTTPStatus.OK
    assert b"at most 254 characters" in response.content
    assert not Invitation.objects.exists()


# -- who may accept how ---------------------------------------------------------------------


def test_a_password_account_cannot_be_made_while_password_login_is_off(sent):
    _, path = sent
    turn_password_login_off(break_glass="olga")
    invitee = Client()
    assert b"password1" not in invitee.get(path).content  # only "Continue with Okta"

    response = accept(invitee, path)  # the password form, posted all the same
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert b"Password login is turned off" in response.content
    assert "_auth_user_id" not in invitee.session
    assert not User.objects.filter(username="newbie").exists()


def test_a_deactivated_admins_invitation_no_longer_grants_org_admin(
    client, org_admin, user_factory, django_capture_on_commit_callbacks
):
    """An Org admin invites an address of their own into the Org-admin group and is then
    deactivated: the pending link must not let them back in as Org admin."""
    admins = Team.objects.get(name="org_admin group")
    client.force_login(org_admin)
    with django_capture_on_commit_callbacks(execute=True):
        invitation = invite(client, admins, email="backdoor@example.net")
    path = link_path(mail.outbox[-1])
    other_admin = Client()
    other_admin.force_login(user_factory("ada", Role.ORG_ADMIN))
    response = other_admin.post(f"/admin/users/{org_admin.pk}/deactivate/")
    assert response.status_code == HTTPStatus.FOUND

    invitation.refresh_from_db()
    assert invitation.revoked_at
    assert AuditEntry.objects.filter(
        object_repr="backdoor@example.net", message__contains="olga, who sent it, was deactivated"
    )
    stranger = Client()
    assert accept(stranger, path, username="olga2").status_code == HTTPStatus.GONE
    assert not User.objects.filter(username="olga2").exists()


def test_an_invitation_whose_inviter_may_no_longer_manage_users_is_refused(client, sent, org_admin):
    _, path = sent
    Team.objects.filter(name="org_admin group").update(role=Role.OPERATOR)
    response = accept(client, path)
    assert response.status_code == HTTPStatus.GONE
    assert b"whoever sent it may no longer add users" in response.content
    assert not User.objects.filter(username="newbie").exists()


VOID = "void: olga, who sent it, may no longer add users"


def test_the_list_calls_an_invitation_of_a_demoted_inviter_void_and_says_why(client, sent, viewer):
    _, path = sent
    Team.objects.filter(name="org_admin group").update(role=Role.OPERATOR)  # olga demoted
    client.force_login(viewer)
    html = client.get("/admin/invitations/").content.decode()
    html = html[html.index("<table") :]
    assert VOID in html
    assert "pending" not in html
    # The same rule refuses the link.
    assert Client().get(path).status_code == HTTPStatus.GONE


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, "pending"),
        ({"accepted_at": timezone.now()}, "accepted"),
        ({"revoked_at": timezone.now()}, "revoked"),
        ({"expires_at": timezone.now()}, "expired"),
        ({"invited_by": None}, "void: the account that sent it is gone"),
    ],
)
def test_the_status_the_lists_show_is_the_answer_the_link_gets(sent, change, expected):
    invitation, path = sent
    Invitation.objects.filter(pk=invitation.pk).update(**change)
    invitation.refresh_from_db()
    assert invitations.status(invitation).startswith(expected)
    pk, token = path.strip("/").split("/")[1:]
    _, problem = invitations.check_link(int(pk), token)
    assert problem == invitations.problem(invitation)
    assert (problem is None) == (expected == "pending")


def test_resending_vouches_for_the_invitation_anew(
    client, sent, user_factory, django_capture_on_commit_callbacks
):
    invitation, _ = sent
    Team.objects.filter(name="org_admin group").update(role=Role.OPERATOR)
    ada = user_factory("ada")
    Team.objects.create(name="Admins", role=Role.ORG_ADMIN).members.add(ada)
    client.force_login(ada)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/invitations/{invitation.pk}/resend/")
    client.logout()
    invitation.refresh_from_db()
    assert invitation.invited_by == ada
    assert accept(client, link_path(mail.outbox[-1])).status_code == HTTPStatus.FOUND


# -- the username, as it will be stored --------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "error"),
    [
        (EXPANDING_USERNAME, b"at most 150 characters as stored; this one becomes 162"),
        ("\uff4f\uff4c\uff47\uff41", b"This username is taken"),  # fullwidth "olga"
        ("\uff2f\uff2c\uff27\uff21", b"This username is taken"),  # fullwidth "OLGA"
    ],
    ids=["expands-past-150", "fullwidth-of-a-taken-name", "fullwidth-case-twin"],
)
def test_the_username_is_checked_as_it_will_be_stored(client, sent, org_admin, username, error):
    _, path = sent
    client.logout()
    response = accept(client, path, username=username)
    assert response.status_code == HTTPStatus.OK
    assert error in response.content
    assert list(User.objects.filter(username__iexact="olga")) == [org_admin]
    assert not User.objects.filter(email="new@example.com").exists()


def test_the_break_glass_admin_keeps_her_login_after_an_invitee_tried_her_fullwidth_name(
    client, sent
):
    _, path = sent
    client.logout()
    accept(client, path, username="\uff2f\uff2c\uff27\uff21")
    turn_password_login_off(break_glass="olga")
    cache.clear()  # the login throttle
    response = client.post("/accounts/login/", {"login": "olga", "password": PASSWORD})
    assert response.status_code == HTTPStatus.FOUND, response.content[:400]
    assert client.session["_auth_user_id"] == str(User.objects.get(username="olga").pk)


def test_a_username_taken_while_the_invitee_typed_is_a_message_not_a_500(
    client, sent, org_admin, monkeypatch
):
    # As if another request created "olga" between the form's check and the insert.
    monkeypatch.setattr(
        AcceptInvitationForm, "clean_username", lambda form: form.cleaned_data["username"]
    )
    _, path = sent
    client.logout()
    response = accept(client, path, username="olga")
    assert response.status_code == HTTPStatus.OK
    assert b"This username is taken; choose another." in response.content
    assert not User.objects.filter(email="new@example.com").exists()


def test_the_list_asks_no_query_per_inviter(client, team, viewer):
    """Each row's status needs its inviter's standing: one annotation, not a query each."""

    def sent_by(count: int) -> None:
        for index in range(count):
            inviter = User.objects.create(username=f"inviter{Invitation.objects.count()}")
            Invitation.objects.create(
                email=f"guest{Invitation.objects.count()}@example.com",
                invited_by=inviter,
                token_hash=f"hash{index}{inviter.pk}",
                expires_at=timezone.now() + timedelta(days=1),
            )

    client.force_login(viewer)
    sent_by(1)
    with CaptureQueriesContext(connection) as one:
        assert client.get("/admin/invitations/").status_code == HTTPStatus.OK
    sent_by(20)
    with CaptureQueriesContext(connection) as many:
        html = client.get("/admin/invitations/").content.decode()
    assert html.count("may no longer add users") == 21  # none of them is in a group
    assert len(many) == len(one)


# -- a mail server that is down ------------------------------------------------------------------


class DownMailServer(BaseEmailBackend):
    """A mail server that is down: every message fails, as SMTP's would."""

    def send_messages(self, email_messages):
        raise SMTPServerDisconnected("Connection unexpectedly closed")


@pytest.fixture
def mail_down(settings):
    settings.EMAIL_BACKEND = f"{__name__}.DownMailServer"


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.mark.django_db(transaction=True)  # the email goes out on commit, as in production
def test_an_invitation_whose_email_cannot_be_sent_is_made_but_not_called_sent(
    admin_client, team, mail_down, caplog
):
    with caplog.at_level("ERROR", logger="portal.invitations"):
        response = admin_client.post(
            "/admin/invitations/add/", {"email": "new@example.com", "groups": [team.pk]}
        )
    assert response.status_code == HTTPStatus.FOUND
    assert said(response) == [
        "Invitation to new@example.com created, but the email could not be sent; resend it."
    ]
    invitation = Invitation.objects.get(email="new@example.com")
    assert invitation.sent_at is None
    assert invitations.status(invitation).startswith("not sent")
    html = admin_client.get("/admin/invitations/").content.decode()
    assert "not sent: the email could not be sent (resend it)" in html
    assert "pending" not in html[html.index("<table") :]
    # Logged, but never the link: whoever reads the log could accept it.
    assert f"emailing invitation {invitation.pk} failed" in caplog.text
    assert "/invitation/" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_resending_an_unsent_invitation_sends_it_once_mail_works_again(
    admin_client, team, settings, mail_down
):
    admin_client.post("/admin/invitations/add/", {"email": "new@example.com", "groups": [team.pk]})
    invitation = Invitation.objects.get(email="new@example.com")

    response = admin_client.post(f"/admin/invitations/{invitation.pk}/resend/")
    assert response.status_code == HTTPStatus.FOUND
    assert "the email could not be sent; resend it." in said(response)[-1]
    invitation.refresh_from_db()
    assert invitation.sent_at is None

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    response = admin_client.post(f"/admin/invitations/{invitation.pk}/resend/")
    assert said(response)[-1] == "Sent a new link to new@example.com; the old one no longer works."
    invitation.refresh_from_db()
    assert invitation.sent_at is not None
    assert invitations.status(invitation) == "pending"
    assert accept(Client(), link_path(mail.outbox[-1])).status_code == HTTPStatus.FOUND


@pytest.mark.django_db(transaction=True)
def test_an_invitation_sent_from_the_add_user_page_says_so_only_once_sent(admin_client, mail_down):
    response = admin_client.post(
        "/admin/users/add/",
        {"username": "ignored", "email": "inv@example.com", "send_invitation": "on"},
    )
    assert response["Location"] == "/admin/invitations/"
    assert said(response) == [
        "Invitation to inv@example.com created, but the email could not be sent; resend it."
    ]
