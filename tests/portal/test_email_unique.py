"""An email address names one account at most, in the database itself (portal 0010), not
only in the forms' check: two requests at the same moment both pass the check, and the
index then refuses the second, which gets a field error or a page, never a 500."""

import importlib
from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from portal import users as user_actions
from tests.conftest import PASSWORD

from . import unique_accounts as unique
from .sso_helpers import sso_login

User = get_user_model()
TAKEN = "A user with this email address already exists."
shared_migration = importlib.import_module("portal.migrations.0010_email_unique_ignoring_case")


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["alice@example.com", "ALICE@EXAMPLE.COM"])
def test_the_database_refuses_an_address_another_account_holds_in_any_case(address):
    User.objects.create_user("alice", "alice@example.com", PASSWORD)
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="bob", email=address)
    assert list(User.objects.values_list("username", flat=True)) == ["alice"]


@pytest.mark.django_db
def test_accounts_without_an_address_are_many():
    User.objects.create_user("alice", "", PASSWORD)
    User.objects.create_user("bob", "", PASSWORD)
    assert User.objects.filter(email="").count() == 2


@pytest.mark.django_db
def test_the_add_user_page_says_the_address_is_taken(admin_client, member):
    response = admin_client.post(
        "/admin/users/add/", {"username": "bob", "email": "MIA@example.com"}
    )
    assert response.status_code == HTTPStatus.OK
    assert TAKEN in response.content.decode()
    assert not User.objects.filter(username="bob").exists()


# -- two requests at the same moment --------------------------------------------------------


@unique.postgresql_only
@pytest.mark.django_db(transaction=True)
def test_adding_a_user_whose_address_a_racing_account_took_raises_email_taken(org_admin):
    with (
        unique.racing_account("alice", "alice@example.com"),
        pytest.raises(user_actions.EmailTaken),
    ):
        user_actions.add_user(org_admin, "bob", "alice@example.com", [], None)
    assert list(User.objects.filter(email__iexact="alice@example.com")) == [
        User.objects.get(username="alice")
    ]


@unique.postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("way", unique.ALL_WAYS)
def test_of_two_requests_for_one_address_one_wins_and_the_other_gets_the_field_error(
    org_admin, way
):
    racer = unique.racing_account("alice", "alice@example.com")
    unique.assert_the_second_loses(
        way, org_admin, racer, "bob", "alice@example.com", ("email", TAKEN)
    )
    assert list(User.objects.filter(email__iexact="alice@example.com").values_list("username")) == [
        ("alice",)
    ]


@unique.postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_first_okta_login_losing_the_race_for_its_address_gets_a_page_not_a_500(
    op, mapped, client
):
    racer = unique.racing_account("other", "ada@example.com")
    unique.first_okta_login_losing_to(racer, client, op, "Email address taken at the same moment")
    assert list(User.objects.filter(email="ada@example.com").values_list("username")) == [
        ("other",)
    ]

    # Nobody vouched that the racing account's address is this person's: no link, no twin.
    again = sso_login(client, op, "ada", "ada-password")
    assert again.status_code == HTTPStatus.FORBIDDEN
    assert User.objects.filter(email="ada@example.com").count() == 1


# -- the migration on a database that already holds shared addresses --------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_refuses_existing_shared_addresses_naming_them_and_runs_once_fixed():
    after = ("portal", "0010_email_unique_ignoring_case")
    with unique.migrated_back_to("portal", "0009_username_unique_ignoring_case"):
        alice = User.objects.create_user("alice", "a@example.com", PASSWORD)
        twin = User.objects.create_user("alice2", "A@Example.com", PASSWORD)
        User.objects.create_user("bob", "b@example.com", PASSWORD)
        User.objects.create_user("nobody1", "", PASSWORD)
        User.objects.create_user("nobody2", "", PASSWORD)
        with pytest.raises(shared_migration.SharedAddresses) as refused:
            MigrationExecutor(connection).migrate([after])
        message = str(refused.value)
        assert (
            f"“alice” (id {alice.pk}, “a@example.com”), “alice2” (id {twin.pk}, “A@example.com”)."
            in message
        )
        assert "bob" not in message and "nobody" not in message

        User.objects.filter(pk=twin.pk).update(email="")
        MigrationExecutor(connection).migrate([after])
        with pytest.raises(IntegrityError), transaction.atomic():
            User.objects.create_user("carol", "B@EXAMPLE.COM", PASSWORD)
