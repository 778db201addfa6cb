"""A data scientist deploys "Jupyter Notebook" into a local workspace, uses it, opens it
through the portal before and after a restart, and deletes it.

Real parts throughout: headless Chromium, a django-q2 worker process, the local driver,
and a JupyterLab server started by the deploy task. The notebook server is then asked,
through its own kernel protocol with the token the page revealed, for the environment
the code runs in: it must be the workspace's.
"""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811

import json
import urllib.request
import uuid
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from pools.lifecycle import State
from pools.models import Workspace
from services.models import ServiceDeployment
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

CODE = 'import os; print(repr(os.environ["CUDA_VISIBLE_DEVICES"]), os.environ["WORKSPACE_NAME"])'


def run_in_kernel(base: str, token: str, code: str) -> str:
    """Start a kernel over the REST API and execute `code` over its websocket."""
    import websocket

    request = urllib.request.Request(
        f"{base}/api/kernels",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"token {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        kernel = json.loads(response.read())
    ws_url = base.replace("http://", "ws://") + f"/api/kernels/{kernel['id']}/channels"
    socket = websocket.create_connection(
        ws_url, header=[f"Authorization: token {token}"], timeout=60
    )
    msg_id = uuid.uuid4().hex
    socket.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False},
                "channel": "shell",
            }
        )
    )
    output = ""
    while True:
        message = json.loads(socket.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream":
            output += message["content"]["text"]
        if message["msg_type"] == "error":
            raise AssertionError(message["content"])
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    socket.close()
    return output


def jupyterlab_address(workspace) -> str:
    """Where the workspace's JupyterLab runs now, as the portal knows it."""
    deployment = ServiceDeployment.objects.get(workspace=workspace, state=State.READY)
    return deployment.components.get(component="jupyterlab").endpoints[0]["url"]


def open_through_the_portal(page) -> str:
    """Click the page's Open JupyterLab button; the address of the lab that opened."""
    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Open JupyterLab").click()
    lab = opened.value
    expect(lab).to_have_title("JupyterLab", timeout=60_000)
    address = lab.url
    lab.close()
    return address


def test_a_data_scientist_deploys_jupyter_and_runs_code_in_the_workspace(
    qcluster, live_server_on_shared_database, page, workspaces_root
):
    load_demo()
    log_in(page, *DEMO_SCIENTIST)
    page.goto("/workspaces/")
    card = page.locator('article[data-profile="starter"]')
    card.get_by_role("button", name="Request workspace").click()
    item = page.locator("#my-workspaces article[data-workspace]")
    expect(item).to_have_attribute("data-state", "ready", timeout=60_000)
    workspace = Workspace.objects.get(owner__username=DEMO_SCIENTIST[0])

    page.goto(f"/workspaces/{workspace.pk}/")
    panel = page.locator("#services-panel")
    expect(panel.get_by_label("Jupyter Notebook")).to_be_visible(timeout=60_000)
    panel.get_by_label("Jupyter Notebook").check()
    panel.get_by_role("button", name="Deploy").click()
    row = page.locator('#services-panel tr[data-component="jupyterlab"]')
    expect(row).to_have_attribute("data-status", "ready", timeout=120_000)
    expect(row.locator("a.endpoint")).to_contain_text("/lab")

    row.get_by_role("button", name="Reveal token").click()
    link = row.locator("a.open-with-token")
    expect(link).to_contain_text("Open JupyterLab")
    href = link.get_attribute("href")
    token = parse_qs(urlparse(href).query)["token"][0]

    # Open JupyterLab through the link shown: the lab page loads.
    lab = page.context.new_page()
    lab.goto(href)
    expect(lab).to_have_title("JupyterLab", timeout=60_000)
    lab.close()

    base = f"{urlparse(href).scheme}://{urlparse(href).netloc}"
    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=10) as response:
        assert "started" in json.loads(response.read())
    output = run_in_kernel(base, token, CODE)
    # The demo "Starter" profile is CPU-only: the workspace's CUDA_VISIBLE_DEVICES is empty.
    assert output.strip() == f"'' {workspace.resource_name}"

    # The Open button logs the browser in through the portal: nobody copies the token. A
    # restart starts JupyterLab on another port; the same button follows it.
    page.goto(f"/workspaces/{workspace.pk}/")
    assert open_through_the_portal(page).startswith(jupyterlab_address(workspace))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".flash-success")).to_contain_text("Stopping workspace")  # same page
    live = page.locator("#workspace-live")
    expect(live).to_have_attribute("data-state", "stopped", timeout=60_000)
    page.get_by_role("button", name="Start").click()
    expect(live).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(row).to_have_attribute("data-status", "ready", timeout=120_000)
    assert open_through_the_portal(page).startswith(jupyterlab_address(workspace))

    # Deleting the workspace removes the stack with it.
    page.goto(f"/workspaces/{workspace.pk}/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").first.click()
    page.goto("about:blank")
    wait_for(lambda: Workspace.objects.get(pk=workspace.pk).state == State.DELETED, 60)
    deployment = ServiceDeployment.objects.get(workspace=workspace)
    assert deployment.state == State.DELETED
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
