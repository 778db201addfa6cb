"""The header at 1366 px in Chromium: one line, menus by keyboard, the current section
marked (issue 18)."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from workspaces.demo import DEMO_ADMIN, DEMO_SCIENTIST, load_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_admin_header_fits_one_line_and_its_menus_work_by_keyboard(page):
    load_demo()
    page.set_viewport_size({"width": 1366, "height": 900})
    log_in(page, *DEMO_ADMIN)
    page.goto("/admin/pools/")
    brand = page.locator(".topbar .brand")
    line = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)")
    assert brand.bounding_box()["height"] < 2 * line  # "GPU PaaS" on one line
    items = page.locator(".topbar nav > ul > li")
    tops = {round(items.nth(i).bounding_box()["y"]) for i in range(items.count())}
    assert max(tops) - min(tops) < 10, tops  # every top-level item on one row
    expect(page.locator("summary.current")).to_contain_text("Capacity")

    catalog = page.locator("details.nav-menu", has_text="Catalog")
    catalog.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(catalog).to_have_attribute("open", "")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Infrastructure")
    page.keyboard.press("Escape")
    expect(catalog).not_to_have_attribute("open", "")
    page.keyboard.press("Enter")  # focus went back to the menu's button
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/infrastructure/")
    expect(page.locator("a[aria-current=page]")).to_have_text("Infrastructure")


def test_a_data_scientist_sees_only_self_service(page):
    load_demo()
    log_in(page, *DEMO_SCIENTIST)
    page.goto("/workspaces/")
    expect(page.locator(".nav-sections > li")).to_have_count(1)
    expect(page.locator(".nav-sections a[aria-current=page]")).to_have_text("Self-service")
