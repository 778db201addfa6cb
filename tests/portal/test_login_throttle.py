"""The login throttle keeps guessers out without letting strangers lock an owner out.

allauth counts failed logins per address ("10/m/ip") and per login ("5/5m/key"). The
per-login count alone let anyone keep the break-glass admin out by failing with their name
from a few addresses; a browser the account logged in from before now counts on a login
of its own (OWASP's device cookie), while every other attempt counts as before.
"""

from http import HTTPStatus

import pytest
from django.core.cache import cache
from django.test import Client

from portal.accounts import TRUSTED_BROWSER_COOKIE
from tests.conftest import PASSWORD, turn_password_login_off

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(params=["local login on", "local login off"])
def password_login(request, org_admin):
    """Both modes; with local login off, olga is the break-glass admin."""
    if request.param == "local login off":
        turn_password_login_off(break_glass="olga")
    return request.param


def attempt(client: Client, login: str, password: str):
    return client.post(LOGIN, {"login": login, "password": password})


def fail_from_many_addresses(login: str, addresses: int = 20) -> int:
    """Wrong passwords for `login`, two from each address (well under the per-address
    limit); returns the status of the last answer."""
    for n in range(addresses):
        stranger = Client(REMOTE_ADDR=f"203.0.113.{n + 1}")
        for _ in range(2):
            response = attempt(stranger, login, "wrong-guess")
    return response.status_code


def test_the_admin_logs_in_from_their_browser_while_strangers_fail_with_their_name(
    password_login, org_admin
):
    admin_browser = Client(REMOTE_ADDR="198.51.100.7")
    assert attempt(admin_browser, "olga", PASSWORD).status_code == HTTPStatus.FOUND
    admin_browser.post("/accounts/logout/")

    assert fail_from_many_addresses("olga") == HTTPStatus.TOO_MANY_REQUESTS
    response = attempt(admin_browser, "olga", PASSWORD)
    assert response.status_code == HTTPStatus.FOUND
    assert admin_browser.session["_auth_user_id"] == str(org_admin.pk)


@pytest.mark.parametrize("password", ["wrong-guess", PASSWORD], ids=["wrong", "right"])
def test_a_guesser_from_many_addresses_is_throttled_right_guess_or_wrong(password_login, password):
    assert fail_from_many_addresses("olga", addresses=3) == HTTPStatus.TOO_MANY_REQUESTS
    guesser = Client(REMOTE_ADDR="192.0.2.200")  # a fresh address
    assert attempt(guesser, "olga", password).status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "_auth_user_id" not in guesser.session


def test_a_browser_trusted_for_one_account_is_a_stranger_to_another(org_admin, member):
    guesser = Client(REMOTE_ADDR="192.0.2.10")
    assert attempt(guesser, "mia", PASSWORD).status_code == HTTPStatus.FOUND  # her own
    guesser.post("/accounts/logout/")
    assert fail_from_many_addresses("olga", addresses=3) == HTTPStatus.TOO_MANY_REQUESTS
    assert attempt(guesser, "olga", PASSWORD).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_a_forged_trusted_browser_cookie_counts_for_nothing(org_admin):
    guesser = Client(REMOTE_ADDR="192.0.2.11")
    guesser.cookies[TRUSTED_BROWSER_COOKIE] = str(org_admin.pk)  # unsigned
    assert fail_from_many_addresses("olga", addresses=3) == HTTPStatus.TOO_MANY_REQUESTS
    assert attempt(guesser, "olga", PASSWORD).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_the_admins_own_browser_is_throttled_too_when_it_guesses(org_admin):
    browser = Client(REMOTE_ADDR="198.51.100.8")
    assert attempt(browser, "olga", PASSWORD).status_code == HTTPStatus.FOUND
    browser.post("/accounts/logout/")
    for _ in range(5):
        assert attempt(browser, "olga", "wrong-guess").status_code == HTTPStatus.OK
    assert attempt(browser, "olga", PASSWORD).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_the_trusted_browser_cookie_is_signed_http_only_and_lax(org_admin):
    browser = Client(REMOTE_ADDR="198.51.100.9")
    attempt(browser, "olga", PASSWORD)
    cookie = browser.cookies[TRUSTED_BROWSER_COOKIE]
    assert cookie.value != str(org_admin.pk) and cookie.value.startswith(f"{org_admin.pk}:")
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
