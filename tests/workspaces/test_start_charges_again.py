"""Start charges the workspace again, as a request would: what its profile holds now, to a
group its owner is in now."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pools import tasks
from pools.lifecycle import State
from pools.models import GpuAllocation, Workspace
from portal.models import AuditEntry, Team
from portal.roles import Role
from workspaces import actions, quotas
from workspaces.actions import RequestRefused

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    for name in ("provision", "deprovision", "stop", "start"):
        monkeypatch.setattr(f"pools.tasks.enqueue_{name}", lambda pk: None)


@pytest.fixture
def gpu_profile(local_infrastructure, profile_factory):
    return profile_factory(
        local_infrastructure, "One A100", groups=[("A100-40GB", 1)], published=True
    )


@pytest.fixture
def slice_profile(local_infrastructure, profile_factory, partitioned):
    partitioned(local_infrastructure)
    profile = profile_factory(local_infrastructure, "One slice", groups=[], published=True)
    profile.resource_groups.create(gpu_model="A100-40GB", gpu_count=1, mig_profile="1g.5gb")
    return profile


def put(workspace, state) -> Workspace:
    Workspace.objects.filter(pk=workspace.pk).update(state=state)
    return Workspace.objects.get(pk=workspace.pk)


def grow_to_two_slices(profile) -> None:
    """What the profile form does when an operator asks for two slices."""
    profile.resource_groups.update(gpu_count=2)
    profile.version += 1
    profile.save(update_fields=["version"])


def stopped_on_the_local_driver(member, profile) -> Workspace:
    workspace = actions.request_workspace(member, profile)
    assert tasks.provision_workspace(workspace.pk) == "ready"
    actions.stop_workspace(member, Workspace.objects.get(pk=workspace.pk))
    tasks.stop_workspace(workspace.pk)
    workspace = Workspace.objects.get(pk=workspace.pk)
    assert workspace.state == State.STOPPED
    assert not GpuAllocation.objects.filter(holder=workspace.resource_name).exists()
    return workspace


def test_start_after_the_profile_grew_is_checked_for_what_it_will_take(
    member, slice_profile, fake_gpus, workspaces_root
):
    """The driver starts a workspace on its profile as it is now (`Workspace.spec()`): once
    the profile grew from 1 to 2 slices, a group allowed 1 slice refuses the Start, and no
    slice is taken."""
    Team.objects.filter(pk=member.teams.get().pk).update(max_mig_slices=1)
    workspace = stopped_on_the_local_driver(member, slice_profile)
    grow_to_two_slices(slice_profile)

    refusal = "allows 1 concurrent MIG slice and has 0 in use; starting it needs 2"
    with pytest.raises(RequestRefused, match=refusal):
        actions.start_workspace(member, workspace)
    assert Workspace.objects.get(pk=workspace.pk).state == State.STOPPED
    assert not GpuAllocation.objects.filter(holder=workspace.resource_name).exists()


def test_a_started_workspace_is_charged_and_holds_what_its_profile_holds_now(
    member, slice_profile, fake_gpus, workspaces_root
):
    """With room, the Start stores the new counts and version: the quota shows the two
    slices it holds."""
    Team.objects.filter(pk=member.teams.get().pk).update(max_mig_slices=2)
    workspace = stopped_on_the_local_driver(member, slice_profile)
    grow_to_two_slices(slice_profile)

    actions.start_workspace(member, workspace)
    assert tasks.start_workspace(workspace.pk) == "ready"
    workspace.refresh_from_db()
    assert (workspace.mig_slices, workspace.profile_version) == (2, 2)
    assert GpuAllocation.objects.filter(holder=workspace.resource_name).count() == 2
    assert quotas.usage_of(member)[0].used["mig_slices"] == 2


def test_a_member_removed_from_the_charged_group_is_refused_by_the_group_left_to_her(
    user_factory, gpu_profile
):
    """Mia's workspace was charged to "A lab"; taken out of it, she is left in "B lab",
    whose quota allows no GPU: her Start is refused as a request is, naming "B lab"."""
    mia = user_factory("mia")
    a_lab = Team.objects.create(name="A lab", role=Role.MEMBER)
    b_lab = Team.objects.create(name="B lab", role=Role.MEMBER, max_gpus=0)
    a_lab.members.add(mia)
    b_lab.members.add(mia)
    workspace = put(actions.request_workspace(mia, gpu_profile), State.STOPPED)
    assert workspace.team == a_lab

    a_lab.members.remove(mia)
    mia = type(mia).objects.get(pk=mia.pk)  # permissions are cached on the user object
    with pytest.raises(RequestRefused, match="Quota reached: group “B lab” allows 0"):
        actions.start_workspace(mia, workspace)
    workspace.refresh_from_db()
    assert (workspace.state, workspace.team) == (State.STOPPED, a_lab)


def test_a_start_is_charged_to_another_group_of_the_owners_with_room(user_factory, gpu_profile):
    """Out of "A lab", Mia's workspace starts on the quota of "B lab", which has room:
    charged there, and its event says so."""
    mia = user_factory("mia")
    a_lab = Team.objects.create(name="A lab", role=Role.MEMBER)
    b_lab = Team.objects.create(name="B lab", role=Role.MEMBER, max_gpus=1, max_workspaces=1)
    a_lab.members.add(mia)
    b_lab.members.add(mia)
    workspace = put(actions.request_workspace(mia, gpu_profile), State.STOPPED)
    a_lab.members.remove(mia)

    actions.start_workspace(type(mia).objects.get(pk=mia.pk), workspace)
    workspace.refresh_from_db()
    assert (workspace.state, workspace.team) == (State.STARTING, b_lab)
    assert workspace.events.filter(message="start requested, charged to group “B lab”").exists()


def test_a_start_stays_on_its_group_while_that_has_room(user_factory, gpu_profile):
    """Its own group is chosen first (it already counts as one of its workspaces there),
    even where another group comes first by name."""
    mia = user_factory("mia")
    b_lab = Team.objects.create(name="B lab", role=Role.MEMBER, max_workspaces=1)
    b_lab.members.add(mia)
    workspace = put(actions.request_workspace(mia, gpu_profile), State.STOPPED)
    Team.objects.create(name="A lab", role=Role.MEMBER).members.add(mia)

    actions.start_workspace(type(mia).objects.get(pk=mia.pk), workspace)
    workspace.refresh_from_db()
    assert (workspace.state, workspace.team) == (State.STARTING, b_lab)


def test_a_workspace_requested_outside_every_group_is_limited_once_its_owner_is_in_one(
    user_factory, gpu_profile
):
    """A superuser outside every group requests without a quota (`team` is None); put in a
    group whose quota allows no GPU, their Start is refused as their request is."""
    root = user_factory("root", is_superuser=True)
    workspace = put(actions.request_workspace(root, gpu_profile), State.STOPPED)
    assert workspace.team is None
    Team.objects.create(name="Lab", role=Role.MEMBER, max_gpus=0).members.add(root)
    root = type(root).objects.get(pk=root.pk)
    with pytest.raises(RequestRefused, match="Quota reached"):
        actions.request_workspace(root, gpu_profile)
    with pytest.raises(RequestRefused, match="Quota reached: group “Lab” allows 0"):
        actions.start_workspace(root, workspace)
    assert Workspace.objects.get(pk=workspace.pk).state == State.STOPPED


def started_in_b_lab(user_factory, gpu_profile, a_lab_hours, b_lab_hours) -> Workspace:
    """Mia's workspace, requested in "A lab", stopped, started on the quota of "B lab"
    once she left "A lab"; the groups' maximum lifetimes are given."""
    mia = user_factory("mia")
    a_lab = Team.objects.create(name="A lab", role=Role.MEMBER, max_lifetime_hours=a_lab_hours)
    b_lab = Team.objects.create(name="B lab", role=Role.MEMBER, max_lifetime_hours=b_lab_hours)
    a_lab.members.add(mia)
    b_lab.members.add(mia)
    workspace = put(actions.request_workspace(mia, gpu_profile), State.STOPPED)
    a_lab.members.remove(mia)
    actions.start_workspace(type(mia).objects.get(pk=mia.pk), workspace)
    workspace.refresh_from_db()
    assert (workspace.state, workspace.team) == (State.STARTING, b_lab)
    return workspace


@pytest.mark.parametrize("a_lab_hours", [None, 1000])
def test_a_start_charged_to_a_group_with_a_shorter_lifetime_expires_within_it(
    user_factory, gpu_profile, a_lab_hours
):
    """Requested in "A lab" (no maximum lifetime, so it never expired; or 1,000 hours),
    started on "B lab"'s quota, whose workspaces live at most 8 hours: it expires 8 hours
    from the start, or the sweep would let it live on as "A lab" allowed."""
    start = timezone.now()
    workspace = started_in_b_lab(user_factory, gpu_profile, a_lab_hours, 8)
    assert start + timedelta(hours=8) <= workspace.expires_at <= timezone.now() + timedelta(hours=8)
    expiry = f"{workspace.expires_at:%Y-%m-%d %H:%M} UTC"
    assert workspace.events.filter(
        message=f"start requested, charged to group “B lab”; it expires at {expiry}, "
        "the group's maximum"
    ).exists()
    entry = AuditEntry.objects.filter(object_id=str(workspace.pk)).latest("id")
    assert (entry.before["state"], entry.after["state"]) == (State.STOPPED, State.STARTING)
    assert (entry.before["team"], entry.after["team"]) == ("A lab", "B lab")
    assert entry.after["expires_at"] == workspace.expires_at.isoformat()


def test_a_start_charged_to_a_group_with_a_longer_lifetime_keeps_its_expiry(
    user_factory, gpu_profile
):
    """An expiry sooner than the new group's maximum stays: moving never lengthens a life."""
    workspace = started_in_b_lab(user_factory, gpu_profile, 8, 1000)
    entry = AuditEntry.objects.filter(object_id=str(workspace.pk)).latest("id")
    assert entry.before["expires_at"] == entry.after["expires_at"]
    assert workspace.expires_at <= timezone.now() + timedelta(hours=8)
    assert workspace.events.filter(message="start requested, charged to group “B lab”").exists()
