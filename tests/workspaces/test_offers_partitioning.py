"""A compute profile asking for MIG slices its infrastructure's partitioning no longer
offers is shown as unavailable, with which slices are gone for those who may change it,
and cannot be requested or started either."""

import html

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from pools.lifecycle import State
from pools.models import Workspace
from profiles.choices import PartitioningMode
from profiles.models import ComputeProfile, PartitioningStrategy
from workspaces import actions, offers
from workspaces.actions import RequestRefused

SELF_SERVICE = reverse("workspaces:self_service")
GONE = (
    "The partitioning of This machine offers no 3g.20gb of A100-40GB slices any more; "
    "change its partitioning, or this profile's resource groups."
)


@pytest.fixture
def sliced(local_infrastructure, profile_factory):
    """A published profile of one 3g.20gb slice, on a partitioning that offers it."""
    PartitioningStrategy.objects.create(
        infrastructure=local_infrastructure,
        gpu_model="A100-40GB",
        mode=PartitioningMode.NAMED,
        layout_name="all-3g.20gb",
    )
    profile = profile_factory(local_infrastructure, "Slice", published=True)
    profile.resource_groups.update(gpu_model="A100-40GB", gpu_count=1, mig_profile="3g.20gb")
    return profile


def offered(user, profile):
    loaded = ComputeProfile.objects.prefetch_related("resource_groups").get(pk=profile.pk)
    [shown] = offers.offers(user, [loaded])
    return shown


def take_the_slices_away(infrastructure):
    """However it came about: an edit from before edits were checked, say."""
    infrastructure.partitionings.update(mode=PartitioningMode.WHOLE, layout_name="")


def test_a_profile_whose_slices_are_offered_is_usable(member, sliced):
    shown = offered(member, sliced)
    assert shown.usable and shown.note == ""


def test_a_profile_whose_slices_are_gone_is_unavailable(member, org_admin, sliced):
    take_the_slices_away(sliced.infrastructure)
    shown = offered(member, sliced)
    assert not shown.usable
    assert shown.estimate == ""
    assert shown.note.startswith("Unavailable right now; ask your platform team")
    assert shown.admin_hint == ""  # what an administrator would change is not theirs
    assert offered(org_admin, sliced).admin_hint == GONE


def test_the_card_says_so_and_offers_no_request_button(client, member, org_admin, sliced):
    take_the_slices_away(sliced.infrastructure)
    client.force_login(member)
    page = html.unescape(client.get(SELF_SERVICE).content.decode())
    card = page[page.index('data-profile="slice"') :].split("</article>")[0]
    assert "Request workspace" not in card
    assert "Unavailable right now" in card and "3g.20gb" not in card.split("</dl>")[1]
    client.force_login(org_admin)
    page = html.unescape(client.get(SELF_SERVICE).content.decode())
    assert f"For administrators: {GONE}" in page


def test_a_slice_of_another_model_does_not_count(member, sliced):
    """The partitioning offers 3g.20gb on A100-40GB; an H100 3g.40gb group is not held."""
    sliced.resource_groups.update(gpu_model="H100-80GB", mig_profile="3g.40gb")
    assert not offered(member, sliced).usable


def test_a_profile_whose_slices_are_gone_cannot_be_requested(client, member, sliced):
    """What the card shows unavailable is refused in the card's words, and nothing made."""
    take_the_slices_away(sliced.infrastructure)
    client.force_login(member)
    response = client.post(reverse("workspaces:request", args=[sliced.pk]), {"name": "nb"})
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert not Workspace.objects.exists()
    assert said == ["“Slice”: Unavailable right now; ask your platform team when it will be back."]


def test_an_administrator_is_refused_with_the_slices_that_are_gone(org_admin, sliced):
    take_the_slices_away(sliced.infrastructure)
    with pytest.raises(RequestRefused) as refused:
        actions.request_workspace(org_admin, sliced)
    assert str(refused.value) == f"“Slice”: {GONE}"


def test_a_stopped_workspace_whose_slices_are_gone_cannot_start(member, sliced):
    workspace = actions.request_workspace(member, sliced)
    Workspace.objects.filter(pk=workspace.pk).update(state=State.STOPPED)
    take_the_slices_away(sliced.infrastructure)
    with pytest.raises(RequestRefused, match=r"^“Slice”: Unavailable right now"):
        actions.start_workspace(member, Workspace.objects.get(pk=workspace.pk))
    assert Workspace.objects.get(pk=workspace.pk).state == State.STOPPED
