"""The login throttle keeps guessers out without letting strangers lock an owner out.

allauth counts failed logins per address ("10/m/ip") and per login ("5/5m/key"). The
per-login count alone let anyone keep the break-glass admin out by failing with their name
from a few addresses; a browser the account logged in from before, with its current
password, now counts on a bucket of its own, one per browser (OWASP's device cookie), while
every other attempt counts as before.
"""

import re
from http import HTTPStatus

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from portal import users as user_actions
from portal.accounts import TRUSTED_BROWSER_COOKIE, trusted_browser
from tests.conftest import PASSWORD, turn_password_login_off

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"
NEW_PASSWORD = "a-fresh-and-unusual-passphrase"


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


def logged_in_once(address: str, login: str = "olga") -> Client:
    browser = Client(REMOTE_ADDR=address)
    assert attempt(browser, login, PASSWORD).status_code == HTTPStatus.FOUND
    browser.post("/accounts/logout/")
    return browser


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


def test_each_browser_that_logged_in_as_an_account_has_a_bucket_of_its_own(org_admin):
    """Five failures from another browser that once logged in as olga (a colleague's
    machine, a kiosk, a stolen cookie) leave her usual browser's bucket untouched."""
    usual = logged_in_once("198.51.100.7")
    other = logged_in_once("198.51.100.99")
    for _ in range(5):
        attempt(other, "olga", "wrong-guess")
    assert attempt(other, "olga", PASSWORD).status_code == HTTPStatus.TOO_MANY_REQUESTS

    response = attempt(usual, "olga", PASSWORD)
    assert response.status_code == HTTPStatus.FOUND
    assert usual.session["_auth_user_id"] == str(org_admin.pk)


def _request_with_cookies_of(browser: Client, rf):
    request = rf.post(LOGIN)
    request.COOKIES.update({name: morsel.value for name, morsel in browser.cookies.items()})
    return request


def test_a_password_change_ends_the_trust_of_browsers_that_logged_in_before(org_admin, rf):
    browser = logged_in_once("198.51.100.7")
    assert trusted_browser(_request_with_cookies_of(browser, rf)).user == org_admin

    org_admin.set_password(NEW_PASSWORD)
    org_admin.save()

    assert trusted_browser(_request_with_cookies_of(browser, rf)) is None


def test_after_a_password_change_an_old_browser_is_throttled_with_the_strangers(org_admin):
    old_browser = logged_in_once("198.51.100.7")
    org_admin.set_password(NEW_PASSWORD)
    org_admin.save()
    assert fail_from_many_addresses("olga", addresses=3) == HTTPStatus.TOO_MANY_REQUESTS
    assert attempt(old_browser, "olga", NEW_PASSWORD).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_a_password_reset_in_the_owners_browser_clears_the_bucket_strangers_filled(org_admin):
    """allauth clears the buckets of the account's addresses after a reset; the reset
    changed the password, so the resetting browser is no longer trusted and the bucket
    cleared is the shared one, which strangers filled."""
    user_actions.record_verified_email(org_admin)  # as adding the user does
    usual = logged_in_once("198.51.100.7")
    assert fail_from_many_addresses(org_admin.email, addresses=3) == HTTPStatus.TOO_MANY_REQUESTS

    usual.post("/accounts/password/reset/", {"email": org_admin.email})
    link = re.search(r"http://[^/\s]+(/accounts/password/reset/key/\S+/)", mail.outbox[-1].body)
    form_page = usual.get(link[1])
    reset = usual.post(
        form_page["Location"], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert reset.status_code == HTTPStatus.FOUND

    elsewhere = Client(REMOTE_ADDR="192.0.2.50")
    assert attempt(elsewhere, org_admin.email, NEW_PASSWORD).status_code == HTTPStatus.FOUND
