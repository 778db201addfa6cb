"""The partitioning form's live feedback in a real browser (htmx, no page reload)."""

import pytest
from playwright.sync_api import expect

from profiles.models import PartitioningStrategy
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from tests.profiles.conftest import datacenter_infrastructure  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_feedback_follows_the_form_as_the_admin_types(
    page,
    org_admin,
    datacenter_infrastructure,  # noqa: F811
):
    log_in(page, org_admin.username, PASSWORD)
    page.goto("/admin/partitioning/add/")
    page.select_option("select[name=infrastructure]", label="DC")
    page.select_option("select[name=mode]", "custom")
    page.fill("input[name='count_3g.20gb']", "2")
    feedback = page.locator("#layout-feedback")
    expect(feedback.locator(".badge")).to_have_text("valid")
    expect(feedback.locator("td[data-profile='3g.20gb']")).to_have_text("24")  # 2 × 4 × 3
    page.fill("input[name='count_1g.5gb']", "1")
    expect(feedback).to_contain_text("2×3g.20gb use all 8 memory slices; no room for 1g.5gb")
    page.fill("input[name='count_1g.5gb']", "0")
    page.fill("input[name='count_3g.20gb']", "1")
    page.fill("input[name='count_2g.10gb']", "1")
    expect(feedback.locator(".free")).to_have_count(2)
    # Another model: its own profiles replace the count fields.
    page.select_option("select[name=gpu_model]", "H100-80GB")
    expect(page.locator("input[name='count_3g.40gb']")).to_be_visible()
    expect(page.locator("input[name='count_3g.20gb']")).to_have_count(0)
    page.select_option("select[name=gpu_model]", "A100-40GB")
    page.fill("input[name='count_3g.20gb']", "1")
    page.fill("input[name='count_2g.10gb']", "1")
    page.click("button:has-text('Create partitioning strategy')")
    expect(page.locator("h1")).to_have_text("DC · A100-40GB")
    assert PartitioningStrategy.objects.get().custom_counts == {"3g.20gb": 1, "2g.10gb": 1}
