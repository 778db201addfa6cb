"""A data scientist sees the idle banner and the unread notification, and snoozes the stop
(issue 16), in headless Chromium."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from pools import idle
from pools.idle import Reading
from pools.lifecycle import State
from pools.models import Workspace
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from tests.workspace_fixtures import starter, workspace_factory  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_scientist_sees_the_idle_banner_and_snoozes_it(
    page, member, starter, workspace_factory
):
    team = member.teams.get()
    team.idle_stop_hours = 2
    team.save()
    became_ready = timezone.now() - timedelta(minutes=100)
    workspace = workspace_factory(
        member, starter, state=State.READY, team=team, name="notebook", state_changed=became_ready
    )
    quiet = Reading(signals=("JupyterLab",), last_active=became_ready)
    assert idle.run_pass(read=lambda ws, now: quiet) == {"warned": 1}

    log_in(page, member.username, PASSWORD)
    page.goto("/workspaces/")
    banner = page.locator(f"#idle-banner-{workspace.pk}")
    expect(banner).to_contain_text("will be stopped at")
    expect(page.locator("#notifications-link")).to_contain_text("1 unread")

    banner.get_by_role("button", name="Keep it running").click()
    expect(page.locator(".flash-success")).to_contain_text("keeps running")
    expect(page.locator(f"#idle-banner-{workspace.pk}")).to_have_count(0)
    assert page.url.endswith("/workspaces/")
    assert Workspace.objects.get(pk=workspace.pk).idle_snoozes == 1
