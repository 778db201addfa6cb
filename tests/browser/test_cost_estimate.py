"""A data scientist sees what a workspace costs before requesting it (issue 16), in
headless Chromium."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from tests.usage.pricing import priced_profile

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_scientist_sees_the_cost_per_hour_on_the_card(
    page, member, local_infrastructure, profile_factory
):
    profile = priced_profile(local_infrastructure, profile_factory)

    log_in(page, member.username, PASSWORD)
    page.goto("/workspaces/")
    card = page.locator(f'article[data-profile="{profile.slug}"]')
    expect(card.locator(".cost")).to_have_text("about $1.20 per hour")
