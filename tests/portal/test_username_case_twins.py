"""Usernames are unique ignoring case in the database itself, not only in the forms' check.

The race tests hold one request's account uncommitted while the other request runs: the
second passes the form's check (it cannot see the first yet) and then waits on the index
until the first commits, which happens as soon as PostgreSQL shows it waiting.
"""

import importlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from api import tokens
from api.models import Scope
from portal.models import Invitation, Team
from tests.conftest import PASSWORD

from .sso_helpers import sso_login

User = get_user_model()
NEW_PASSWORD = "a-long-and-unusual-passphrase"
TAKEN = "This username is taken; choose another."
twins_migration = importlib.import_module("portal.migrations.0009_username_unique_ignoring_case")
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the race needs row locks (PostgreSQL)"
)


@pytest.mark.django_db
def test_the_database_refuses_a_username_differing_only_in_case():
    User.objects.create_user("alice", "alice@example.com", PASSWORD)
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="ALICE", email="other@example.com")
    assert list(User.objects.values_list("username", flat=True)) == ["alice"]


# -- two requests at the same moment --------------------------------------------------------


def _wait_until_someone_waits_for_me(timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)


@contextmanager
def racing_account(username: str, email: str = "") -> Iterator[None]:
    """Another request creating `username` (with `email`, else an address of its own):
    uncommitted until a request waits on it (or 5 s passed, when nothing does: without the
    index nobody waits)."""
    created = threading.Event()

    def create_and_commit_once_someone_waits():
        try:
            with transaction.atomic():
                User.objects.create_user(username, email or f"{username}@racer.example", PASSWORD)
                created.set()
                _wait_until_someone_waits_for_me()
        finally:
            connection.close()

    racer = threading.Thread(target=create_and_commit_once_someone_waits)
    racer.start()
    assert created.wait(10)
    try:
        yield
    finally:
        racer.join(20)


def _add_user_page(org_admin):
    client = Client()
    client.force_login(org_admin)
    response = client.post("/admin/users/add/", {"username": "Alice", "email": "alice@example.com"})
    assert response.status_code == HTTPStatus.OK
    assert TAKEN in response.content.decode()


def _invitation_page(org_admin):
    admin = Client()
    admin.force_login(org_admin)
    admin.post("/admin/invitations/add/", {"email": "alice@example.com"})
    path = re.search(r"https?://[^/\s]+(/invitation/\d+/[^/\s]+/)", mail.outbox[-1].body)[1]
    response = Client().post(
        path, {"username": "Alice", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == HTTPStatus.OK
    assert TAKEN in response.content.decode()
    assert Invitation.objects.get().accepted_at is None


def _api(org_admin):
    token = tokens.create_token(org_admin, "race", Scope.READ_WRITE, 30)[1]
    response = Client().post(
        "/api/v1/users/",
        {"username": "Alice", "email": "alice@example.com"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["errors"]["username"] == [TAKEN]


@postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("create", [_add_user_page, _invitation_page, _api])
def test_of_two_requests_for_case_twins_one_wins_and_the_other_gets_the_field_error(
    org_admin, create
):
    with racing_account("alice"):
        create(org_admin)
    assert list(User.objects.filter(username__iexact="alice").values_list("username")) == [
        ("alice",)
    ]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_first_okta_login_losing_the_race_for_its_username_gets_a_page_not_a_500(
    op, mapped, client
):
    with racing_account("Ada"):
        response = sso_login(client, op, "ada", "ada-password")
    assert response.status_code == HTTPStatus.CONFLICT
    assert "Username taken at the same moment" in response.content.decode()
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
    before = ("portal", "0008_bound_group_hours")
    after = ("portal", "0009_username_unique_ignoring_case")
    MigrationExecutor(connection).migrate([before])
    try:
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
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
