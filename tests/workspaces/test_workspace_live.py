"""The workspace page follows its state live (issue 12): htmx asks the same URL for the
live part (state, properties, events) often while a worker moves it or repairs it, now and
then while it is ready (the watcher may find it degraded), never once nothing can change it
by itself."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811

import pytest
from django.urls import reverse

from pools.lifecycle import State, transition
from tests.workspace_fixtures import starter, workspace_factory  # noqa: F401

pytestmark = pytest.mark.django_db
LIVE = {"HX-Request": "true"}


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


def page(client, workspace, headers=None) -> str:
    return client.get(
        reverse("workspaces:detail", args=[workspace.pk]), headers=headers
    ).content.decode()


@pytest.mark.parametrize(
    ("state", "every"),
    [(State.PROVISIONING, "2s"), (State.DEGRADED, "2s"), (State.READY, "10s")],
)
def test_the_page_polls_while_its_state_may_change_by_itself(
    member_client, member, starter, workspace_factory, state, every
):
    workspace = workspace_factory(member, starter, state=state)
    html = page(member_client, workspace)
    assert f'hx-trigger="every {every}"' in html
    assert 'data-polling="yes"' in html


@pytest.mark.parametrize("state", [State.STOPPED, State.FAILED, State.DELETED])
def test_the_page_stops_polling_once_nothing_changes_it_by_itself(
    member_client, member, starter, workspace_factory, state
):
    workspace = workspace_factory(member, starter, state=state)
    html = page(member_client, workspace, LIVE)
    assert 'data-polling="no"' in html
    assert "hx-trigger" not in html


def test_the_live_part_shows_a_degraded_workspace_with_its_reason_and_events(
    member_client, member, starter, workspace_factory
):
    workspace = workspace_factory(member, starter, state=State.READY)
    transition(
        workspace,
        State.DEGRADED,
        message="degraded: JupyterLab exited; see the log",
        failure_reason="JupyterLab exited; see the log",
    )
    html = page(member_client, workspace, LIVE)
    assert "<html" not in html  # the live part alone, swapped into the open page
    assert 'id="workspace-live" data-state="degraded"' in html
    assert "Something is wrong:</strong> JupyterLab exited; see the log" in html
    assert 'id="workspace-events" hx-swap-oob="true"' in html
    assert "degraded: JupyterLab exited; see the log" in html  # its event
    assert "Ready → Degraded" in html


def test_the_self_service_list_says_what_is_wrong(
    member_client, member, starter, workspace_factory
):
    workspace = workspace_factory(member, starter, state=State.READY)
    transition(workspace, State.DEGRADED, failure_reason="Its process 42 exited.")
    html = member_client.get(reverse("workspaces:mine")).content.decode()
    assert "Its process 42 exited. <small" in html
    assert 'hx-trigger="every 2s"' in html  # followed until it is repaired


def test_the_owner_may_stop_a_degraded_workspace(member_client, member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.DEGRADED)
    assert reverse("workspaces:stop", args=[workspace.pk]) in page(member_client, workspace)
    member_client.post(reverse("workspaces:stop", args=[workspace.pk]))
    workspace.refresh_from_db()
    assert workspace.state == State.STOPPING


def test_another_members_workspace_stays_hidden_from_the_live_part(
    client, member, starter, workspace_factory, user_factory
):
    workspace = workspace_factory(member, starter, state=State.READY)
    client.force_login(user_factory("cole", "member"))
    response = client.get(reverse("workspaces:detail", args=[workspace.pk]), headers=LIVE)
    assert response.status_code == 404
