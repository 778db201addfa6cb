"""A scientist's JupyterLab dies; the open workspace page says so, then says it is back.

Real parts throughout: headless Chromium on the workspace page, a django-q2 worker that
provisions the workspace and deploys JupyterLab, the local driver and a real JupyterLab
server, killed with SIGKILL. The test then runs the watcher's steps as its schedule would
(`pools.watch`): one check finds the workspace broken, and the repair steps (due after
their backoff, so the worker's own scheduled looks may take some of them) restart
JupyterLab with the same token.
"""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811

import os
import signal
import time
import urllib.request
from urllib.parse import urlparse

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from pools import supervisor, watch
from pools.lifecycle import State
from pools.models import Workspace
from services.backends.local import PROCESS_FILE, SERVICES_DIR
from services.models import ComponentDeployment
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


def jupyterlab_process(workspaces_root, workspace) -> supervisor.ProcessRecord:
    directory = workspaces_root / workspace.resource_name / SERVICES_DIR / "jupyterlab"
    return supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_a_killed_jupyterlab_turns_the_open_page_degraded_then_ready_again(
    qcluster, live_server_on_shared_database, page, workspaces_root
):
    load_demo()
    log_in(page, *DEMO_SCIENTIST)
    page.goto("/workspaces/")
    page.locator('article[data-profile="starter"]').get_by_role(
        "button", name="Request workspace"
    ).click()
    item = page.locator("#my-workspaces article[data-workspace]")
    expect(item).to_have_attribute("data-state", "ready", timeout=60_000)
    workspace = Workspace.objects.get(owner__username=DEMO_SCIENTIST[0])

    page.goto(f"/workspaces/{workspace.pk}/")
    panel = page.locator("#services-panel")
    panel.get_by_label("Jupyter Notebook").check()
    panel.get_by_role("button", name="Deploy").click()
    row = page.locator('#services-panel tr[data-component="jupyterlab"]')
    expect(row).to_have_attribute("data-status", "ready", timeout=120_000)
    jupyter = ComponentDeployment.objects.get(component="jupyterlab")
    token = jupyter.secret

    live = page.locator("#workspace-live")
    expect(live).to_have_attribute("data-state", "ready")
    record = jupyterlab_process(workspaces_root, workspace)
    os.killpg(record.pid, signal.SIGKILL)  # JupyterLab and its kernels, at once
    wait_for(lambda: not supervisor.is_running(record), 10, what="JupyterLab to die")

    # The watcher's next check (due: as if its interval had passed), unless the worker's
    # own schedule got there first.
    watch.check_one(timezone.now() + watch.CHECK_INTERVAL)
    assert Workspace.objects.get(pk=workspace.pk).state == State.DEGRADED
    expect(live).to_have_attribute("data-state", "degraded", timeout=30_000)
    expect(live.locator("h1")).to_contain_text("Degraded")
    expect(live.locator(".degraded")).to_contain_text("JupyterLab exited; see the log")
    expect(page.locator("#workspace-events")).to_contain_text("Ready → Degraded")

    # The repair steps, as the schedule runs them when each is due.
    deadline = time.monotonic() + 150
    while Workspace.objects.get(pk=workspace.pk).state == State.DEGRADED:
        assert time.monotonic() < deadline, "not repaired in time"
        watch.repair_one()
        time.sleep(1)
    workspace.refresh_from_db()
    assert workspace.state == State.READY, workspace.failure_reason
    expect(live).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(live.locator(".degraded")).to_have_count(0)
    expect(page.locator("#workspace-events")).to_contain_text("Degraded → Ready")
    expect(row).to_have_attribute("data-status", "ready", timeout=30_000)

    # A new JupyterLab process, serving with the same token as before.
    restarted = jupyterlab_process(workspaces_root, workspace)
    assert restarted.pid != record.pid
    jupyter.refresh_from_db()
    assert jupyter.secret == token
    lab = urlparse(jupyter.endpoints[0]["url"])
    assert answers(f"{lab.scheme}://{lab.netloc}/api/status?token={token}")

    supervisor.stop_registered_below(workspaces_root)
