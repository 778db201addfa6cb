"""The overview's GPU figures count what each workspace and warm instance was given, as the
quotas count it, not what its profile asks for after an edit."""

import pytest

from pools.lifecycle import State
from pools.models import PoolInstance, Workspace
from services.models import ServiceDeployment
from workspaces import dashboard
from workspaces.quotas import usage_of


@pytest.fixture
def two_gpus(data_center, profile_factory):
    return profile_factory(data_center, "Two GPUs", groups=(("A100-80GB", 2),), published=True)


def given(profile, member, state=State.READY, **fields) -> Workspace:
    """A workspace given what the profile holds now, as a request gives it."""
    totals = profile.totals()
    return Workspace.objects.create(
        owner=member,
        profile=profile,
        infrastructure=profile.infrastructure,
        state=state,
        team=member.teams.first(),
        gpus=totals["gpus"],
        mig_slices=totals["mig_slices"],
        profile_version=profile.version,
        **fields,
    )


def edit(profile, **group_fields) -> None:
    profile.resource_groups.update(**group_fields)
    profile.version += 1
    profile.save(update_fields=["version"])


def a100_row() -> dashboard.GpuRow:
    return next(r for r in dashboard.build().gpus if r.label == "A100-80GB")


def test_a_profile_edited_after_its_workspace_was_made_does_not_change_what_it_holds(
    two_gpus, member
):
    given(two_gpus, member)
    # An administrator doubles the profile; the running workspace keeps its two GPUs until
    # it is started again (and the quota still counts two).
    edit(two_gpus, gpu_count=4)
    assert usage_of(member)[0].used["gpus"] == 2

    row = a100_row()
    assert (row.total, row.in_use, row.idle) == (8, 2, 6)


def test_the_gpus_a_services_stack_holds_of_its_own_are_in_use(two_gpus, member):
    workspace = given(two_gpus, member)
    ServiceDeployment.objects.create(
        workspace=workspace,
        infrastructure=workspace.infrastructure,
        target_name=workspace.resource_name,
        profile_name="Inference",
        own_gpus=1,
        state=State.READY,
    )
    assert usage_of(member)[0].used["gpus"] == 3
    assert a100_row().in_use == 3


def test_a_warm_instance_holds_the_share_it_was_made_with(two_gpus, data_center):
    PoolInstance.objects.create(
        profile=two_gpus, infrastructure=data_center, state=State.READY, gpu_share=2.0
    )
    edit(two_gpus, gpu_count=4)  # the loop replaces it; until then it holds two
    row = a100_row()
    assert (row.warm, row.idle) == (2, 6)


def test_what_a_heterogeneous_profile_gave_is_laid_over_its_groups_in_order(
    data_center, profile_factory, member
):
    """Models are not stored on a workspace: one given 2 A100 and 1 H100 stays at that
    when the profile grows, its groups filled in order."""
    profile = profile_factory(data_center, "Mixed", groups=(("A100-80GB", 2), ("H100-80GB", 1)))
    given(profile, member)
    edit(profile, gpu_count=2)  # two of each now
    rows = {row.label: row.in_use for row in dashboard.build().gpus}
    assert (rows["A100-80GB"], rows["H100-80GB"]) == (2, 1)
