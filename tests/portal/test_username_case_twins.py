"""Usernames are unique ignoring case in the database itself, not only in the forms' check
(the race tests' harness: `tests/portal/unique_accounts.py`)."""

import importlib
from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from portal.models import Team
from tests.conftest import PASSWORD

from . import unique_accounts as unique
from .sso_helpers import sso_login

User = get_user_model()
TAKEN = "This username is taken; choose another."
twins_migration = importlib.import_module("portal.migrations.0009_username_unique_ignoring_case")


@pytest.mark.django_db
def test_the_database_refuses_a_username_differing_only_in_case():
    User.objects.create_user("alice", "alice@example.com", PASSWORD)
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="ALICE", email="other@example.com")
    assert list(User.objects.values_list("username", flat=True)) == ["alice"]


# -- two requests at the same moment --------------------------------------------------------


@unique.postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("way", unique.ALL_WAYS)
def test_of_two_requests_for_case_twins_one_wins_and_the_other_gets_the_field_error(org_admin, way):
    racer = unique.racing_account("alice")
    unique.assert_the_second_loses(
        way, org_admin, racer, "Alice", "alice@example.com", ("username", TAKEN)
    )
    assert list(User.objects.filter(username__iexact="alice").values_list("username")) == [
        ("alice",)
    ]


@unique.postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_first_okta_login_losing_the_race_for_its_username_gets_a_page_not_a_500(
    op, mapped, client
):
    unique.first_okta_login_losing_to(
        unique.racing_account("Ada"), client, op, "Username taken at the same moment"
    )
    assert list(User.objects.values_list("username", flat=True).order_by("pk"))[-1] == "Ada"
    assert not User.objects.filter(email="ada@example.com").exists()

    again = sso_login(client, op, "ada", "ada-password")  # the way out the page names
    assert again.status_code == HTTPStatus.FOUND
    newcomer = User.objects.get(email="ada@example.com")
    assert newcomer.username.lower() != "ada"
    assert newcomer in Team.objects.get(name="GPU users").members.all()


# -- Okta's usernames are stored as the forms store them -------------------------------------


@pytest.mark.django_db
def test_an_okta_username_is_nfkc_normalised_before_the_case_check(op, mapped, client):
    User.objects.create_user("ada", "ada.local@example.com", PASSWORD)
    op.update_user("ada", preferred_username="ＡＤＡ")  # fullwidth: "ADA" once NFKC-normalised
    assert sso_login(client, op, "ada", "ada-password").status_code == HTTPStatus.FOUND
    newcomer = User.objects.get(email="ada@example.com")
    assert newcomer.username.upper() not in ("ADA", "ＡＤＡ")


@pytest.mark.django_db
def test_a_first_okta_login_whose_name_is_a_dotless_i_twin_gets_another_name(op, mapped, client):
    """On PostgreSQL, Okta's "ida" is taken by "ıda" (a dotless ı) under the index's rule,
    UPPER, which makes both "IDA"; the username allauth makes up instead is one that rule
    lets through. (SQLite's UPPER folds ASCII only: there "ida" is free.)"""
    User.objects.create_user("ıda", "dotless@example.com", PASSWORD)
    op.update_user("ada", preferred_username="ida", given_name="Ida", family_name="")
    response = sso_login(client, op, "ada", "ada-password")
    assert response.status_code == HTTPStatus.FOUND, response.content.decode()[:2000]
    newcomer = User.objects.get(email="ada@example.com")
    assert newcomer.username.startswith("ida")
    assert User.objects.filter(username__iexact=newcomer.username).count() == 1


@pytest.mark.django_db
def test_an_okta_username_is_stored_nfkc_normalised(op, mapped, client):
    op.update_user("ada", preferred_username="ＡＤＡ")
    assert sso_login(client, op, "ada", "ada-password").status_code == HTTPStatus.FOUND
    assert User.objects.get(email="ada@example.com").username == "ADA"


# -- the migration on a database that already holds case twins -------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_refuses_existing_case_twins_naming_them_and_runs_once_renamed():
    after = ("portal", "0009_username_unique_ignoring_case")
    with unique.migrated_back_to("portal", "0008_bound_group_hours"):
        alice = User.objects.create_user("alice", "a1@example.com", PASSWORD)
        twin = User.objects.create_user("ALICE", "a2@example.com", PASSWORD)
        User.objects.create_user("bob", "b@example.com", PASSWORD)
        with pytest.raises(twins_migration.CaseTwins) as refused:
            MigrationExecutor(connection).migrate([after])
        assert f"“alice” (id {alice.pk}), “ALICE” (id {twin.pk})." in str(refused.value)
        assert "bob" not in str(refused.value)

        User.objects.filter(pk=twin.pk).update(username="alice2")
        MigrationExecutor(connection).migrate([after])
        with pytest.raises(IntegrityError), transaction.atomic():
            User.objects.create_user("Alice2", "a3@example.com", PASSWORD)
