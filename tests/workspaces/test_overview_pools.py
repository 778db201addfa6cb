"""The overview's warm-pool "Ready" figure counts only instances a request could claim now."""

import pytest

from pools.claims import ready_counts
from pools.lifecycle import State
from pools.models import PoolInstance
from profiles.choices import AllocationStrategy
from workspaces import dashboard


@pytest.fixture
def warm_profile(local_infrastructure, profile_factory):
    profile = profile_factory(
        local_infrastructure,
        "Warm",
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=2,
    )
    profile.version = 2
    profile.save(update_fields=["version"])
    return profile


def ready_instance(profile, **fields) -> PoolInstance:
    fields = {"profile_version": profile.version} | fields
    return PoolInstance.objects.create(
        profile=profile, infrastructure=profile.infrastructure, state=State.READY, **fields
    )


def pool_row(profile) -> dashboard.PoolRow:
    return next(p for p in dashboard.build().pools if p.profile_id == profile.pk)


def test_the_overview_counts_no_unhealthy_or_outdated_warm_instance_as_ready(warm_profile):
    # Ready by state, but nobody can claim them: one failed its health check, the other
    # was made for the profile's previous version (the loop replaces both).
    ready_instance(warm_profile, unhealthy=True)
    ready_instance(warm_profile, profile_version=1)
    assert ready_counts([warm_profile]).get(warm_profile.pk, 0) == 0  # a request gets none
    assert pool_row(warm_profile).ready == 0


def test_the_overview_counts_the_instances_a_request_could_claim(warm_profile):
    ready_instance(warm_profile)
    ready_instance(warm_profile)
    ready_instance(warm_profile, unhealthy=True)
    assert pool_row(warm_profile).ready == ready_counts([warm_profile])[warm_profile.pk] == 2
