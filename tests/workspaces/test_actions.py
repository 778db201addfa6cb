from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from pools.lifecycle import State
from pools.models import Workspace
from portal.models import AuditEntry, Team
from portal.roles import Role
from profiles.models import ComputeProfile, ServicesProfile
from workspaces import actions
from workspaces.actions import RequestRefused


@pytest.fixture
def enqueued(monkeypatch):
    """The task calls made on commit, instead of queueing them."""
    calls = []
    monkeypatch.setattr("pools.tasks.enqueue_provision", lambda pk: calls.append(("p", pk)))
    monkeypatch.setattr("pools.tasks.enqueue_deprovision", lambda pk: calls.append(("d", pk)))
    return calls


@pytest.fixture
def gpu_profile(local_infrastructure, profile_factory):
    return profile_factory(
        local_infrastructure, "One A100", groups=[("A100-40GB", 1)], published=True
    )


def member_group(member) -> Team:
    return member.teams.get()


def test_a_request_creates_audits_and_provisions_on_commit(
    member, starter, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        workspace = actions.request_workspace(member, starter, " notebook ")
    assert workspace.state == State.REQUESTED
    assert workspace.name == "notebook"
    assert workspace.resource_name == f"ws-{workspace.pk}"
    assert workspace.team == member_group(member)
    assert enqueued == [("p", workspace.pk)]
    assert AuditEntry.objects.filter(object_id=str(workspace.pk), action="created").exists()
    assert workspace.events.get().message == "requested, charged to group “member group”"


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("lab\nnotes", "lab notes"),
        (" a\r\n\tb\x07c\u2028d  ", "a b c d"),
        ("\n\x1b\n", ""),
        ("x" * 59 + "\ny", "x" * 59),  # cut to 60 characters, without the space at the end
    ],
)
def test_a_requested_name_is_one_line(member, starter, enqueued, typed, kept):
    assert actions.request_workspace(member, starter, typed).name == kept


def test_nothing_is_enqueued_when_the_request_rolls_back(member, starter, enqueued):
    # Without a commit (the test's transaction is rolled back) no task may run.
    actions.request_workspace(member, starter)
    assert enqueued == []


def test_an_unpublished_profile_cannot_be_requested(member, starter):
    starter.published = False
    starter.save()
    with pytest.raises(RequestRefused, match="may not use"):
        actions.request_workspace(member, starter)


def test_a_profile_of_other_groups_cannot_be_requested(member, starter, user_factory):
    other = Team.objects.create(name="Vision team")
    starter.teams.add(other)
    with pytest.raises(RequestRefused, match="may not use"):
        actions.request_workspace(member, starter)


def test_the_workspace_quota_says_which_group_stopped_it(member, starter):
    Team.objects.filter(pk=member_group(member).pk).update(max_workspaces=1)
    actions.request_workspace(member, starter)
    with pytest.raises(RequestRefused) as refused:
        actions.request_workspace(member, starter)
    assert str(refused.value) == (
        "Quota reached: group “member group” allows 1 concurrent workspace and has 1 in use; "
        "this profile needs 1."
    )


def test_the_gpu_quota_counts_the_whole_group(member, user_factory, gpu_profile):
    Team.objects.filter(pk=member_group(member).pk).update(max_gpus=1)
    colleague = user_factory("cole", Role.MEMBER)  # same "member group"
    actions.request_workspace(colleague, gpu_profile)
    with pytest.raises(RequestRefused, match="allows 1 concurrent GPU and has 1 in use"):
        actions.request_workspace(member, gpu_profile)


def test_a_cpu_profile_is_not_stopped_by_a_full_gpu_quota(member, starter, gpu_profile):
    Team.objects.filter(pk=member_group(member).pk).update(max_gpus=1)
    actions.request_workspace(member, gpu_profile)
    actions.request_workspace(member, starter)


def test_mig_slices_are_counted_separately(
    member, local_infrastructure, profile_factory, gpu_profile, partitioned
):
    partitioned(local_infrastructure)
    slices = profile_factory(
        local_infrastructure, "Slices", groups=[("A100-40GB", 2)], published=True
    )
    slices.resource_groups.update(mig_profile="1g.5gb")
    Team.objects.filter(pk=member_group(member).pk).update(max_gpus=1, max_mig_slices=3)
    actions.request_workspace(member, gpu_profile)
    actions.request_workspace(member, slices)
    with pytest.raises(RequestRefused, match="allows 3 concurrent MIG slices and has 2 in use"):
        actions.request_workspace(member, slices)


def test_any_group_with_room_allows_the_request_and_is_charged(member, starter):
    full = member_group(member)
    Team.objects.filter(pk=full.pk).update(max_workspaces=0)
    roomy = Team.objects.create(name="z roomy", role=Role.MEMBER, max_workspaces=5)
    roomy.members.add(member)
    workspace = actions.request_workspace(member, starter)
    assert workspace.team == roomy


def test_every_full_group_is_named_when_none_has_room(member, starter):
    Team.objects.filter(pk=member_group(member).pk).update(max_workspaces=0)
    other = Team.objects.create(name="Other", role=Role.MEMBER, max_workspaces=0)
    other.members.add(member)
    with pytest.raises(RequestRefused) as refused:
        actions.request_workspace(member, starter)
    assert "“Other”" in str(refused.value)
    assert "“member group”" in str(refused.value)


def test_only_groups_granting_the_profile_count(member, starter):
    Team.objects.filter(pk=member_group(member).pk).update(max_workspaces=0)
    granting = Team.objects.create(name="Granting", role=Role.MEMBER, max_workspaces=1)
    granting.members.add(member)
    starter.teams.add(granting)
    assert actions.request_workspace(member, starter).team == granting


def test_a_viewer_groups_list_grants_nothing(member, starter):
    """Only a self-service group grants a profile: a Viewer group listing it neither lets
    its members use it nor lets them escape their own group's quota."""
    Team.objects.filter(pk=member_group(member).pk).update(max_workspaces=0, max_gpus=0)
    readers = Team.objects.create(name="Readers", role=Role.VIEWER)
    readers.members.add(member)
    starter.teams.add(readers)  # the only group that lists it
    stack = ServicesProfile.objects.create(name="Readers' stack")
    stack.teams.add(readers)

    assert not ComputeProfile.objects.usable_by(member).filter(pk=starter.pk).exists()
    assert not ServicesProfile.objects.usable_by(member).filter(pk=stack.pk).exists()
    with pytest.raises(RequestRefused, match="may not use"):
        actions.request_workspace(member, starter)
    assert not Workspace.objects.filter(owner=member).exists()


def test_a_superuser_outside_every_group_is_not_limited(user_factory, starter):
    root = user_factory("root", is_superuser=True)
    workspace = actions.request_workspace(root, starter)
    assert (workspace.team, workspace.expires_at) == (None, None)


def test_a_user_in_groups_without_one_to_charge_is_refused(user_factory, starter):
    # A superuser may use the open profile, but their only group grants no self-service:
    # no group to charge, and being in a group they are not unlimited either.
    root = user_factory("root", Role.VIEWER, is_superuser=True)
    with pytest.raises(RequestRefused, match="None of your groups grants self-service use"):
        actions.request_workspace(root, starter)
    assert not Workspace.objects.filter(owner=root).exists()


def test_released_workspaces_free_the_quota(member, starter):
    Team.objects.filter(pk=member_group(member).pk).update(max_workspaces=1)
    first = actions.request_workspace(member, starter)
    first.__class__.objects.filter(pk=first.pk).update(state=State.DELETED)
    actions.request_workspace(member, starter)


def test_the_group_lifetime_sets_the_expiry(member, starter):
    Team.objects.filter(pk=member_group(member).pk).update(max_lifetime_hours=8)
    workspace = actions.request_workspace(member, starter)
    assert abs(workspace.expires_at - (timezone.now() + timedelta(hours=8))) < timedelta(minutes=1)


def test_an_unusable_infrastructure_refuses_the_request_in_words_each_reader_can_act_on(
    member, org_admin, aws_infrastructure, profile_factory
):
    profile = profile_factory(aws_infrastructure, "Cloud", published=True)
    with pytest.raises(RequestRefused, match="not offered yet; ask your platform team") as refused:
        actions.request_workspace(member, profile)
    assert "credentials" not in str(refused.value)
    with pytest.raises(RequestRefused, match="No credentials: add them"):
        actions.request_workspace(org_admin, profile)


def test_the_owner_deletes_and_deprovisioning_follows_on_commit(
    member, starter, enqueued, django_capture_on_commit_callbacks
):
    workspace = actions.request_workspace(member, starter)
    with django_capture_on_commit_callbacks(execute=True):
        actions.delete_workspace(member, workspace)
    workspace.refresh_from_db()
    assert workspace.state == State.DELETING
    assert enqueued == [("d", workspace.pk)]
    with pytest.raises(RequestRefused, match="This workspace is already deleting"):
        actions.delete_workspace(member, workspace)


def test_a_deleted_workspace_cannot_be_deleted_again(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.DELETED)
    with pytest.raises(RequestRefused, match="This workspace is already deleted"):
        actions.delete_workspace(member, workspace)


def test_another_member_may_not_delete_but_an_admin_may(member, starter, user_factory, org_admin):
    workspace = actions.request_workspace(member, starter)
    with pytest.raises(RequestRefused):
        actions.delete_workspace(user_factory("eve", Role.MEMBER), workspace)
    actions.delete_workspace(org_admin, workspace)
    workspace.refresh_from_db()
    assert workspace.state == State.DELETING


def test_the_secret_is_revealed_to_the_owner_once(member, starter, org_admin):
    workspace = actions.request_workspace(member, starter)
    workspace.secret = "s3cret-token"
    workspace.save()
    assert actions.reveal_secret(org_admin, workspace) == ""
    assert actions.reveal_secret(member, workspace) == "s3cret-token"
    assert actions.reveal_secret(member, workspace) == ""


def test_revealing_the_secret_is_audited_without_it(client, member, starter, workspace_factory):
    """The page and the API reveal through `actions.reveal_secret`, which records the
    reveal (once: the secret is shown once), never the token."""
    workspace = workspace_factory(member, starter, state=State.READY, secret="s3cret-token")
    client.force_login(member)
    response = client.post(reverse("workspaces:reveal_secret", args=[workspace.pk]))
    assert b"s3cret-token" in response.content
    client.post(reverse("workspaces:reveal_secret", args=[workspace.pk]))  # shows nothing
    [entry] = AuditEntry.objects.filter(object_id=str(workspace.pk), actor=member)
    assert entry.message == "revealed the workspace's token"
    assert "s3cret-token" not in str([entry.message, entry.before, entry.after])


def latest_entry(workspace) -> AuditEntry:
    return AuditEntry.objects.filter(object_id=str(workspace.pk)).latest("id")


def test_a_stop_is_audited_with_the_state_before_and_after(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.READY)
    actions.stop_workspace(member, workspace)
    entry = latest_entry(workspace)
    assert (entry.message, entry.actor) == ("stopped workspace", member)
    assert (entry.before["state"], entry.after["state"]) == (State.READY, State.STOPPING)


def test_a_deletion_is_audited_with_the_state_before_and_after(
    member, starter, workspace_factory, enqueued
):
    workspace = workspace_factory(member, starter, state=State.READY)
    actions.delete_workspace(member, workspace)
    entry = latest_entry(workspace)
    assert (entry.message, entry.actor) == ("deleted workspace", member)
    assert (entry.before["state"], entry.after["state"]) == (State.READY, State.DELETING)
