"""What the tests of unique usernames and email addresses share: two requests creating an
account at the same moment (on two PostgreSQL connections), and the migration adding an index.

`racing_account` holds one request's account uncommitted while the other request runs: the
second passes the form's check (it cannot see the first yet) and then waits on the database's
unique index until the first commits, which happens as soon as PostgreSQL shows it waiting.
The three ways an account is made (the add-user page, an invitation, the API) are each one
function posting `username` and `email` while a racer holds its account.
"""

import re
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from api import tokens
from api.models import Scope
from api.problems import PROBLEM_JSON
from portal.models import Invitation
from tests.conftest import PASSWORD

from .sso_helpers import sso_login

User = get_user_model()
NEW_PASSWORD = "a-long-and-unusual-passphrase"
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the race needs row locks (PostgreSQL)"
)


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


def via_add_user_page(org_admin, racer: AbstractContextManager, username: str, email: str):
    admin = Client()
    admin.force_login(org_admin)
    with racer:
        return admin.post("/admin/users/add/", {"username": username, "email": email})


def via_invitation(org_admin, racer: AbstractContextManager, username: str, email: str):
    """An invitation to `email` (sent before the race), accepted as `username`."""
    admin = Client()
    admin.force_login(org_admin)
    admin.post("/admin/invitations/add/", {"email": email})
    path = re.search(r"https?://[^/\s]+(/invitation/\d+/[^/\s]+/)", mail.outbox[-1].body)[1]
    with racer:
        return Client().post(
            path, {"username": username, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
        )


def via_api(org_admin, racer: AbstractContextManager, username: str, email: str):
    token = tokens.create_token(org_admin, "race", Scope.READ_WRITE, 30)[1]
    with racer:
        return Client().post(
            "/api/v1/users/",
            {"username": username, "email": email},
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )


ALL_WAYS = [via_add_user_page, via_invitation, via_api]


def assert_the_second_loses(way, org_admin, racer, username: str, email: str, error: tuple):
    """`way` posting `username` and `email` while `racer` holds its account: the post gets
    the `error` (field, message) on the page it posted, or in the API's errors (a problem
    document), and no invitation is accepted."""
    field, message = error
    response = way(org_admin, racer, username, email)
    if response["Content-Type"].startswith(PROBLEM_JSON):
        assert response.status_code == HTTPStatus.BAD_REQUEST
        assert response.json()["errors"][field] == [message]
    else:
        assert response.status_code == HTTPStatus.OK
        assert message in response.content.decode()
    assert not Invitation.objects.filter(accepted_at__isnull=False).exists()


def first_okta_login_losing_to(racer, client, op, says: str) -> None:
    """Ada's first Okta login while `racer` holds its account: a page that `says` why, not
    a 500."""
    with racer:
        response = sso_login(client, op, "ada", "ada-password")
    assert response.status_code == HTTPStatus.CONFLICT
    assert says in response.content.decode()


@contextmanager
def migrated_back_to(app: str, migration: str) -> Iterator[None]:
    """The database as it was at `migration`; migrated to the latest again afterwards."""
    MigrationExecutor(connection).migrate([(app, migration)])
    try:
        yield
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
