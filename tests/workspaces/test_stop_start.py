"""Stop / Start of a workspace (issue 5): the actions, the GPU quota, the views."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from pools.lifecycle import State
from pools.models import Workspace
from portal.models import AuditEntry, Team
from portal.roles import Role
from workspaces import actions
from workspaces.actions import RequestRefused


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    for name in ("provision", "deprovision", "stop", "start"):
        monkeypatch.setattr(
            f"pools.tasks.enqueue_{name}", lambda pk, name=name: calls.append((name, pk))
        )
    return calls


@pytest.fixture
def gpu_profile(local_infrastructure, profile_factory):
    return profile_factory(
        local_infrastructure, "One A100", groups=[("A100-40GB", 1)], published=True
    )


def put(workspace, state) -> Workspace:
    Workspace.objects.filter(pk=workspace.pk).update(state=state)
    workspace.refresh_from_db()
    return workspace


def test_stop_moves_a_ready_workspace_audits_and_enqueues_on_commit(
    member, gpu_profile, enqueued, django_capture_on_commit_callbacks
):
    workspace = put(actions.request_workspace(member, gpu_profile), State.READY)
    with django_capture_on_commit_callbacks(execute=True):
        actions.stop_workspace(member, workspace)
    workspace.refresh_from_db()
    assert workspace.state == State.STOPPING
    assert ("stop", workspace.pk) in enqueued
    assert AuditEntry.objects.filter(message="stopped workspace").exists()


def test_only_a_ready_workspace_stops_and_only_a_stopped_one_starts(member, gpu_profile):
    workspace = actions.request_workspace(member, gpu_profile)
    with pytest.raises(RequestRefused, match="Only a ready workspace"):
        actions.stop_workspace(member, workspace)
    with pytest.raises(RequestRefused, match="Only a stopped workspace"):
        actions.start_workspace(member, workspace)


def test_another_member_may_not_stop_it(member, gpu_profile, user_factory):
    workspace = put(actions.request_workspace(member, gpu_profile), State.READY)
    with pytest.raises(RequestRefused, match="may not stop"):
        actions.stop_workspace(user_factory("cole", Role.MEMBER), workspace)


def test_a_stopped_workspace_frees_the_gpu_quota_but_still_counts_as_a_workspace(
    member, gpu_profile, enqueued
):
    Team.objects.filter(pk=member.teams.get().pk).update(max_gpus=1, max_workspaces=2)
    first = put(actions.request_workspace(member, gpu_profile), State.STOPPED)
    second = actions.request_workspace(member, gpu_profile)  # the GPU quota has room again
    # Starting the first now needs a second GPU: refused, it stays stopped.
    with pytest.raises(RequestRefused, match="allows 1 concurrent GPU and has 1 in use"):
        actions.start_workspace(member, first)
    assert Workspace.objects.get(pk=first.pk).state == State.STOPPED
    # Two workspaces (one stopped) fill the workspace quota.
    with pytest.raises(RequestRefused, match="allows 2 concurrent workspaces and has 2 in use"):
        actions.request_workspace(member, gpu_profile)
    put(second, State.DELETED)
    actions.start_workspace(member, first)
    assert Workspace.objects.get(pk=first.pk).state == State.STARTING


def test_start_is_refused_once_the_profile_is_no_longer_granted(member, gpu_profile, enqueued):
    # Restricted to another group after Mia stopped her workspace: a request is refused,
    # and so is a start, which would take a GPU again.
    workspace = put(actions.request_workspace(member, gpu_profile), State.STOPPED)
    gpu_profile.teams.add(Team.objects.create(name="Others", role=Role.MEMBER))
    with pytest.raises(RequestRefused, match="may not use"):
        actions.request_workspace(member, gpu_profile)
    with pytest.raises(RequestRefused, match="You may no longer use the compute profile"):
        actions.start_workspace(member, workspace)
    assert ("start", workspace.pk) not in enqueued
    assert Workspace.objects.get(pk=workspace.pk).state == State.STOPPED


def test_start_is_refused_once_the_profile_is_unpublished(member, gpu_profile, enqueued, org_admin):
    workspace = put(actions.request_workspace(member, gpu_profile), State.STOPPED)
    gpu_profile.published = False
    gpu_profile.save(update_fields=["published"])
    with pytest.raises(RequestRefused, match="You may no longer use the compute profile"):
        actions.start_workspace(member, workspace)
    # An administrator may not start it for the owner either.
    with pytest.raises(RequestRefused, match="Its owner may no longer use the compute profile"):
        actions.start_workspace(org_admin, workspace)
    assert ("start", workspace.pk) not in enqueued
    assert Workspace.objects.get(pk=workspace.pk).state == State.STOPPED


# --- views --------------------------------------------------------------------------------


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


def test_the_list_offers_stop_for_ready_and_start_for_stopped(
    member_client, member, gpu_profile, enqueued
):
    ready = put(actions.request_workspace(member, gpu_profile), State.READY)
    page = member_client.get(reverse("workspaces:mine")).content.decode()
    assert reverse("workspaces:stop", args=[ready.pk]) in page
    assert 'data-polling="no"' in page

    response = member_client.post(
        reverse("workspaces:stop", args=[ready.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert 'data-state="stopping"' in page
    assert 'data-polling="yes"' in page  # stopping is in flight: the list keeps polling

    put(ready, State.STOPPED)
    page = member_client.get(reverse("workspaces:mine")).content.decode()
    assert reverse("workspaces:start", args=[ready.pk]) in page
    assert reverse("workspaces:stop", args=[ready.pk]) not in page
    response = member_client.post(reverse("workspaces:start", args=[ready.pk]))
    assert response.status_code == HTTPStatus.FOUND
    assert Workspace.objects.get(pk=ready.pk).state == State.STARTING


def test_a_refused_start_shows_why_in_the_list(member_client, member, gpu_profile):
    Team.objects.filter(pk=member.teams.get().pk).update(max_gpus=1)
    stopped = put(actions.request_workspace(member, gpu_profile), State.STOPPED)
    actions.request_workspace(member, gpu_profile)
    response = member_client.post(
        reverse("workspaces:start", args=[stopped.pk]), headers={"HX-Request": "true"}
    )
    assert "Quota reached" in response.content.decode()


def test_the_detail_page_has_the_stop_button(member_client, member, gpu_profile):
    ready = put(actions.request_workspace(member, gpu_profile), State.READY)
    page = member_client.get(reverse("workspaces:detail", args=[ready.pk])).content.decode()
    assert reverse("workspaces:stop", args=[ready.pk]) in page


def test_another_members_workspace_is_not_found(client, member, gpu_profile, user_factory):
    ready = put(actions.request_workspace(member, gpu_profile), State.READY)
    client.force_login(user_factory("cole", Role.MEMBER))
    response = client.post(reverse("workspaces:stop", args=[ready.pk]))
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert Workspace.objects.get(pk=ready.pk).state == State.READY
