"""`manage.py createsuperuser` refuses a username or an address another account holds in
any case (the database's unique indexes, portal 0009 and 0010) with a message, never a
raw IntegrityError."""

import getpass
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.management.commands import createsuperuser as django_createsuperuser
from django.core.management import CommandError, call_command, get_commands

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def password_from_env(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)


def test_manage_py_runs_the_portals_createsuperuser():
    assert get_commands()["createsuperuser"] == "portal"


def test_a_username_differing_only_in_case_is_refused(org_admin, password_from_env):
    with pytest.raises(CommandError, match="already taken"):
        call_command("createsuperuser", interactive=False, username="OLGA", email="o2@example.com")
    assert list(User.objects.values_list("username", flat=True)) == ["olga"]


@pytest.mark.parametrize("address", ["olga@example.com", "OLGA@Example.com"])
def test_an_address_another_account_holds_is_refused(org_admin, password_from_env, address):
    with pytest.raises(CommandError, match="A user with this email address already exists"):
        call_command("createsuperuser", interactive=False, username="root", email=address)
    assert not User.objects.filter(username="root").exists()


def test_a_free_name_and_address_make_the_superuser(org_admin, password_from_env):
    call_command(
        "createsuperuser",
        interactive=False,
        username="root",
        email="root@example.com",
        stdout=StringIO(),
    )
    assert User.objects.get(username="root").is_superuser


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_the_prompts_say_a_name_or_an_address_is_taken_and_ask_again(org_admin, monkeypatch):
    answers = iter(["OLGA", "root", "olga@example.com", "root@example.com"])
    monkeypatch.setattr(django_createsuperuser, "input", lambda _: next(answers), raising=False)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": PASSWORD)
    errors = StringIO()

    call_command("createsuperuser", stdin=Terminal(), stdout=StringIO(), stderr=errors)

    assert "That username is already taken (ignoring case)." in errors.getvalue()
    assert "A user with this email address already exists." in errors.getvalue()
    assert User.objects.get(username="root").email == "root@example.com"
