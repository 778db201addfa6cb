"""A data scientist sees what a workspace costs before requesting it (issue 16), in
headless Chromium."""

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from usage.models import Price

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_scientist_sees_the_cost_per_hour_on_the_card(
    page, member, local_infrastructure, profile_factory
):
    local_infrastructure.single_user_host = True
    local_infrastructure.save()
    profile = profile_factory(
        local_infrastructure, "One A100", groups=(("A100-40GB", 1),), published=True
    )
    profile.resource_groups.update(storage_gb=100)
    Price.objects.create(kind=Price.Kind.GPU_MODEL, key="A100-40GB", amount=Decimal("1.10"))
    Price.objects.create(kind=Price.Kind.STORAGE, amount=Decimal("0.73"))  # $0.10 an hour

    log_in(page, member.username, PASSWORD)
    page.goto("/workspaces/")
    card = page.locator(f'article[data-profile="{profile.slug}"]')
    expect(card.locator(".cost")).to_have_text("about $1.20 per hour")
