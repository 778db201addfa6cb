"""Issue 11, finding 4: an Okta login may only sign into an account whose address is verified.

Against the real OpenID Connect test provider. Bob is an Okta user (verified address
bob@example.com) whose Okta group maps to a Member group of the portal.
"""

from http import HTTPStatus

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.core.cache import cache

from portal import users as user_actions
from portal.models import AuditEntry
from portal.roles import Role
from tests.conftest import PASSWORD
from tests.oidc.provider import OidcProvider, oidc_provider  # noqa: F401

from .sso_helpers import HOST, configure_sso, map_group, sso_login

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def op(oidc_provider: OidcProvider):  # noqa: F811
    cache.clear()
    oidc_provider.reset()
    oidc_provider.update_user(
        "bob",
        id="00u-bob",
        password="bob-password",
        email="bob@example.com",
        email_verified=True,
        given_name="Bob",
        family_name="Builder",
        groups=["gpu-users"],
    )
    configure_sso(oidc_provider)
    map_group("gpu-users", "GPU users", Role.MEMBER)
    yield oidc_provider
    oidc_provider.reset()


def _logged_in_user(client):
    pk = client.session.get("_auth_user_id")
    return User.objects.get(pk=pk) if pk else None


def test_okta_login_never_lands_in_a_createsuperuser_account_with_the_same_address(op, client):
    # The repro: `createsuperuser` with bob's address (no verified EmailAddress row).
    root = User.objects.create_superuser("root", "bob@example.com", PASSWORD)

    response = sso_login(client, op, "bob", "bob-password")

    assert _logged_in_user(client) != root
    assert not SocialAccount.objects.filter(user=root).exists()
    root.refresh_from_db()
    assert root.check_password(PASSWORD), "the superuser's password must survive"
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert b"sso-address-unverified" in response.content
    # Neither a second account with bob's address.
    assert list(User.objects.filter(email__iexact="bob@example.com")) == [root]


def test_a_member_cannot_add_someone_elses_address_and_collect_their_okta_login(op, client):
    mallory = User.objects.create_user("mallory", "mallory@example.com", PASSWORD)
    client.force_login(mallory)

    added = client.post("/accounts/email/", {"action_add": "", "email": "bob@example.com"}, **HOST)

    assert added.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert not EmailAddress.objects.filter(email__iexact="bob@example.com").exists()
    page = client.get("/accounts/email/", **HOST)
    assert page.status_code == HTTPStatus.OK
    assert b"managed by your administrators" in page.content
    client.logout()

    sso_login(client, op, "bob", "bob-password")
    bob = _logged_in_user(client)
    assert bob is not None and bob != mallory
    assert bob.username == "bob"


def test_an_unverified_address_of_another_account_never_matches(op, client):
    mallory = User.objects.create_user("mallory", "mallory@example.com", PASSWORD)
    EmailAddress.objects.create(user=mallory, email="bob@example.com", verified=False)

    sso_login(client, op, "bob", "bob-password")

    assert _logged_in_user(client) != mallory
    assert not SocialAccount.objects.filter(user=mallory).exists()
    mallory.refresh_from_db()
    assert mallory.check_password(PASSWORD)


def test_okta_login_connects_to_the_account_an_administrator_added_and_audits_it(
    op, client, org_admin
):
    bob = user_actions.add_user(org_admin, "robert", "bob@example.com", [], PASSWORD)

    response = sso_login(client, op, "bob", "bob-password")

    assert response.status_code == HTTPStatus.FOUND, response.content[:300]
    assert _logged_in_user(client) == bob
    assert SocialAccount.objects.get(user=bob).uid == "00u-bob"
    entry = AuditEntry.objects.filter(object_id=str(bob.pk), message__contains="linked").get()
    assert entry.after == {"sso_provider": "okta", "sso_uid": "00u-bob"}
    assert entry.actor == bob


def test_a_first_sso_login_audits_the_link_of_the_new_account(op, client):
    sso_login(client, op, "bob", "bob-password")
    bob = User.objects.get(username="bob")
    assert AuditEntry.objects.filter(
        object_id=str(bob.pk), message="SSO account 00u-bob (okta) linked to this account"
    ).exists()


def test_a_lookalike_unicode_address_does_not_open_another_account(op, client, org_admin):
    # PostgreSQL's UPPER('ı') is 'I': compared with `iexact`, Mallory's verified address at
    # gmaıl.com (a dotless ı: another domain, another mailbox) took Alice's account.
    alice = user_actions.add_user(org_admin, "alice", "alice@gmail.com", [], PASSWORD)
    op.update_user(
        "mallory",
        id="00u-mallory",
        password="mallory-password",
        email="alice@gma\u0131l.com",
        email_verified=True,
        given_name="Mallory",
        family_name="M",
        groups=["gpu-users"],
    )

    sso_login(client, op, "mallory", "mallory-password")

    assert _logged_in_user(client) != alice
    assert not SocialAccount.objects.filter(user=alice).exists()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_a_deactivated_account_gets_no_okta_link_by_its_address(op, client, org_admin):
    robert = user_actions.add_user(org_admin, "robert", "bob@example.com", [], PASSWORD)
    User.objects.filter(pk=robert.pk).update(is_active=False)

    response = sso_login(client, op, "bob", "bob-password")

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/accounts/inactive/"
    assert _logged_in_user(client) is None
    assert not SocialAccount.objects.filter(user=robert).exists()
    robert.refresh_from_db()
    assert robert.check_password(PASSWORD), "allauth wipes the password of an account it links"
