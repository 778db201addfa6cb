from datetime import timedelta
from http import HTTPStatus

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse

from pools import tasks
from pools.lifecycle import State, transition
from pools.models import Workspace
from portal.models import MAX_LIFETIME_HOURS, Team
from portal.roles import Role
from workspaces import actions
from workspaces.estimates import estimate

SELF_SERVICE = reverse("workspaces:self_service")
MINE = reverse("workspaces:mine")
ADMIN_LIST = reverse("workspaces:workspace_list")


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


def test_the_page_offers_the_profiles_with_estimate_and_quota(member_client, member, starter):
    Team.objects.filter(members=member).update(max_workspaces=3)
    page = member_client.get(SELF_SERVICE).content.decode()
    assert 'data-profile="starter"' in page
    assert "ready in seconds" in page
    assert "0 of 3" in page
    assert reverse("workspaces:request", args=[starter.pk]) in page


def test_the_estimate_follows_recent_history(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.READY)
    asked = workspace.created - timedelta(minutes=10)
    Workspace.objects.filter(pk=workspace.pk).update(
        ready_at=asked + timedelta(minutes=4), created=asked
    )
    assert estimate(starter) == "about 4 minutes (provisioning p50 on this infrastructure)"


def test_one_click_requests_a_workspace(member_client, member, starter, workspaces_root):
    response = member_client.post(
        reverse("workspaces:request", args=[starter.pk]), {"name": "exp-1"}
    )
    assert response.status_code == HTTPStatus.FOUND
    workspace = Workspace.objects.get(owner=member)
    assert workspace.name == "exp-1"
    page = member_client.get(SELF_SERVICE).content.decode()
    assert f'data-workspace="{workspace.resource_name}"' in page
    assert 'hx-trigger="every 2s"' in page  # in flight: the list polls


def test_a_name_typed_with_a_line_break_is_kept_on_one_line(member_client, member, starter):
    response = member_client.post(
        reverse("workspaces:request", args=[starter.pk]), {"name": "lab\nnotes"}
    )
    assert response.status_code == HTTPStatus.FOUND
    assert Workspace.objects.get(owner=member).name == "lab notes"


def test_the_page_says_which_quota_stopped_a_request(member_client, member, starter):
    Team.objects.filter(members=member).update(max_workspaces=0)
    response = member_client.post(reverse("workspaces:request", args=[starter.pk]), follow=True)
    assert "group “member group” allows 0 concurrent workspaces" in response.content.decode()
    assert not Workspace.objects.exists()


def test_a_group_lifetime_stored_beyond_the_bound_expires_at_the_bound(
    member_client, member, starter, workspaces_root
):
    # 100 million hours (saved before the group form bounded it) would end after year 9999.
    Team.objects.filter(members=member).update(max_lifetime_hours=100_000_000)
    response = member_client.post(reverse("workspaces:request", args=[starter.pk]), {"name": "x"})
    assert response.status_code == HTTPStatus.FOUND
    workspace = Workspace.objects.get(owner=member)
    assert workspace.expires_at - workspace.created == timedelta(hours=MAX_LIFETIME_HOURS)


def test_the_live_list_shows_progress_and_how_to_connect(
    member_client, member, starter, workspaces_root
):
    workspace = actions.request_workspace(member, starter)
    tasks.provision_workspace(workspace.pk)
    fragment = member_client.get(MINE).content.decode()
    assert fragment.lstrip().startswith('<section id="my-workspaces"')
    assert 'data-state="ready"' in fragment
    assert "environment file written" in fragment
    assert "workspace-shell" in fragment
    assert "hx-trigger" not in fragment  # nothing in flight: polling stops


def test_the_token_is_shown_once(member_client, member, starter):
    workspace = actions.request_workspace(member, starter)
    Workspace.objects.filter(pk=workspace.pk).update(state=State.READY, secret="tok-123")
    url = reverse("workspaces:reveal_secret", args=[workspace.pk])
    assert "tok-123" in member_client.post(url).content.decode()
    assert "tok-123" not in member_client.post(url).content.decode()
    assert "tok-123" not in member_client.get(MINE).content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM workspaces_workspace WHERE id = %s", [workspace.pk])
        assert cursor.fetchone()[0].startswith("fernet:")  # encrypted at rest


def test_delete_from_the_list_returns_the_updated_list(member_client, member, starter):
    workspace = actions.request_workspace(member, starter)
    response = member_client.post(
        reverse("workspaces:delete", args=[workspace.pk]), HTTP_HX_REQUEST="true"
    )
    assert 'data-state="deleting"' in response.content.decode()
    workspace.refresh_from_db()
    assert workspace.state == State.DELETING


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_deleting_a_deleted_workspace_says_so(member_client, member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.DELETED)
    response = member_client.post(reverse("workspaces:delete", args=[workspace.pk]))
    assert said(response) == ["This workspace is already deleted."]


def test_a_delete_that_lost_the_race_to_a_worker_says_so(
    member_client, member, starter, workspace_factory, monkeypatch
):
    """A worker moves the workspace (ready to degraded, the watcher) between the view's
    read and the delete's conditional UPDATE: nothing is requested, and the page says so
    instead of "Deleting workspace …"."""
    workspace = workspace_factory(member, starter, state=State.READY)

    def worker_moves_it_first(obj, to_state, **kwargs):
        Workspace.objects.filter(pk=obj.pk).update(state=State.DEGRADED)
        return transition(obj, to_state, **kwargs)

    monkeypatch.setattr(actions, "transition", worker_moves_it_first)
    response = member_client.post(reverse("workspaces:delete", args=[workspace.pk]))
    assert said(response) == ["The workspace changed at the same moment; try again."]
    workspace.refresh_from_db()
    assert workspace.state != State.DELETING  # nothing was requested


def test_other_users_workspaces_are_not_found(client, member, starter, user_factory):
    workspace = actions.request_workspace(member, starter)
    client.force_login(user_factory("eve", Role.MEMBER))
    assert client.get(workspace.get_absolute_url()).status_code == HTTPStatus.NOT_FOUND
    delete = reverse("workspaces:delete", args=[workspace.pk])
    assert client.post(delete).status_code == HTTPStatus.NOT_FOUND
    secret = reverse("workspaces:reveal_secret", args=[workspace.pk])
    assert client.post(secret).status_code == HTTPStatus.NOT_FOUND
    assert workspace.resource_name not in client.get(MINE).content.decode()


def test_the_owner_sees_events_but_not_the_admin_detail(member_client, member, starter):
    workspace = actions.request_workspace(member, starter)
    Workspace.objects.filter(pk=workspace.pk).update(
        state=State.FAILED, failure_reason="No GPU", failure_detail="nvml: secret internals"
    )
    page = member_client.get(workspace.get_absolute_url()).content.decode()
    assert "No GPU" in page
    assert "secret internals" not in page
    assert "requested, charged to group" in page


def test_admins_see_every_workspace_with_filters(admin_client, member, starter, user_factory):
    mine = actions.request_workspace(member, starter)
    other = actions.request_workspace(user_factory("eve", Role.MEMBER), starter)
    Workspace.objects.filter(pk=other.pk).update(state=State.READY)
    page = admin_client.get(ADMIN_LIST).content.decode()
    assert mine.resource_name in page and other.resource_name in page
    filtered = admin_client.get(ADMIN_LIST, {"state": "ready"}).content.decode()
    assert other.resource_name in filtered and mine.resource_name not in filtered
    by_owner = admin_client.get(ADMIN_LIST, {"owner": member.pk}).content.decode()
    assert mine.resource_name in by_owner and other.resource_name not in by_owner
    Workspace.objects.filter(pk=other.pk).update(state=State.FAILED, failure_detail="internals")
    assert "internals" in admin_client.get(other.get_absolute_url()).content.decode()


@pytest.mark.parametrize(
    ("role", "self_service", "admin_list"),
    [
        (Role.MEMBER, HTTPStatus.OK, HTTPStatus.FORBIDDEN),
        (Role.VIEWER, HTTPStatus.FORBIDDEN, HTTPStatus.OK),
        (Role.OPERATOR, HTTPStatus.OK, HTTPStatus.OK),
        (Role.ORG_ADMIN, HTTPStatus.OK, HTTPStatus.OK),
    ],
)
def test_access_by_role(client, user_factory, role, self_service, admin_list):
    client.force_login(user_factory("someone", role))
    assert client.get(SELF_SERVICE).status_code == self_service
    assert client.get(MINE).status_code == self_service
    assert client.get(ADMIN_LIST).status_code == admin_list


def test_anonymous_users_are_sent_to_log_in(client, member, starter):
    workspace = actions.request_workspace(member, starter)
    for url in [SELF_SERVICE, MINE, ADMIN_LIST, workspace.get_absolute_url()]:
        assert client.get(url).status_code == HTTPStatus.FOUND
