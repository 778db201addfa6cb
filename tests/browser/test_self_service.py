"""The data scientist's whole flow in headless Chromium, with a real django-q2 worker."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811

import pytest
from playwright.sync_api import expect

from pools.lifecycle import State
from pools.models import GpuAllocation, Workspace
from tests.browser.conftest import log_in
from tests.workspace_fixtures import (  # noqa: F401
    live_server_on_shared_database,
    qcluster,
    shared_database,
    wait_for,
    workspaces_root,
)
from workspaces.demo import DEMO_SCIENTIST, load_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_data_scientist_requests_watches_connects_and_deletes_a_workspace(
    qcluster,
    live_server_on_shared_database,
    page,
    workspaces_root,
):
    load_demo()
    log_in(page, *DEMO_SCIENTIST)
    page.goto("/workspaces/")
    card = page.locator('article[data-profile="starter"]')
    expect(card).to_contain_text("ready in seconds")
    card.locator("input[name=name]").fill("my-notebook")
    card.get_by_role("button", name="Request workspace").click()
    expect(page.locator(".flash-success")).to_contain_text("Requested workspace “my-notebook”")

    # From here on the page must update itself: mark the document, and check the mark
    # survives (a reload or navigation would lose it).
    page.evaluate("window.sameDocument = true")
    item = page.locator("#my-workspaces article[data-workspace]")
    expect(item).to_have_count(1)
    expect(item).to_have_attribute("data-state", "ready", timeout=60_000)
    assert page.evaluate("window.sameDocument === true")

    workspace = Workspace.objects.get(owner__username=DEMO_SCIENTIST[0])
    directory = workspaces_root / workspace.resource_name
    expect(item.locator(".workspace-shell")).to_contain_text(f"cd {directory} && ")
    expect(item).to_contain_text("environment file written")
    assert (directory / "workspace.env").exists()

    page.once("dialog", lambda dialog: dialog.accept())
    item.get_by_role("button", name="Delete").click()
    expect(page.locator("#my-workspaces")).to_contain_text("No workspaces yet", timeout=60_000)
    assert page.evaluate("window.sameDocument === true")
    page.goto("about:blank")  # stop polling before the database goes away

    wait_for(lambda: Workspace.objects.get(pk=workspace.pk).state == State.DELETED, 30)
    workspace.refresh_from_db()
    assert workspace.detail["pid"] is None  # no services process was started for Starter
    assert not directory.exists()
    assert not GpuAllocation.objects.filter(holder=workspace.resource_name).exists()
    assert list(workspaces_root.iterdir()) == []
