"""Okta SSO in a real headless Chromium against the real OpenID Connect test provider.

Uses the shared `browser` fixture of tests/browser/conftest.py; each login gets its own
browser context, so no portal or provider cookie carries over.
"""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model

from portal.models import SsoMembership
from portal.roles import Role
from tests.oidc.provider import OidcProvider, oidc_provider  # noqa: F401
from tests.portal.sso_helpers import configure_sso, map_group

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
User = get_user_model()


@pytest.fixture
def op(oidc_provider: OidcProvider):  # noqa: F811
    oidc_provider.reset()
    yield oidc_provider
    oidc_provider.reset()


@pytest.fixture
def portal(op, live_server):
    configure_sso(op)
    return {
        "gpu": map_group("gpu-users", "GPU users", Role.MEMBER),
        "ml": map_group("ml-team", "ML operators", Role.OPERATOR),
    }


def okta_login(browser, live_server, username: str, password: str):
    """Click "Log in with Okta", sign in at the provider, return the page back at the portal."""
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Log in with Okta").click()
    page.wait_for_selector("input[name=username]")
    assert "/oauth2/default/" in page.url  # at the provider, not the portal
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: url.startswith(live_server.url))
    page.wait_for_load_state()
    return page


def test_okta_login_lands_in_the_mapped_groups_and_loses_a_removed_one(
    browser, live_server, op, portal
):
    page = okta_login(browser, live_server, "ada", "ada-password")
    # An Operator (via ml-team) lands on the admin overview, with the admin navigation.
    assert page.url.endswith("/admin/"), page.url
    page.locator("details.nav-menu summary", has_text="Catalog").click()
    assert page.get_by_role("link", name="Infrastructure", exact=True).is_visible()
    assert page.locator("header").inner_text().count("ada") == 1
    ada = User.objects.get(username="ada")
    assert set(ada.teams.values_list("name", flat=True)) == {"GPU users", "ML operators"}
    assert page.goto(f"{live_server.url}/admin/infrastructure/").status == 200
    page.context.close()

    # Okta removes ml-team; the next login (fresh browser, fresh provider session) drops it.
    op.set_groups("ada", ["gpu-users"])
    op.clear_sessions()
    page = okta_login(browser, live_server, "ada", "ada-password")
    assert page.url.endswith("/workspaces/"), page.url
    assert page.get_by_role("link", name="Infrastructure", exact=True).count() == 0
    assert page.goto(f"{live_server.url}/admin/infrastructure/").status == 403
    assert set(ada.teams.values_list("name", flat=True)) == {"GPU users"}
    assert list(SsoMembership.objects.filter(user=ada).values_list("team__name", flat=True)) == [
        "GPU users"
    ]
    page.context.close()


def test_unmapped_okta_user_is_asked_to_see_an_administrator(browser, live_server, op, portal):
    page = okta_login(browser, live_server, "grace", "grace-password")
    assert page.url.endswith("/sso/no-access/"), page.url
    assert "ask your administrator" in page.locator("#sso-no-access").inner_text()
    assert not User.objects.filter(username="grace").exists()
    page.context.close()
