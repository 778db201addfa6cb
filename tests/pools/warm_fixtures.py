"""Helpers shared by the warm-pool tests: a warm profile, and instances in given states."""

from __future__ import annotations

import pytest
from django.utils import timezone

from pools.lifecycle import State
from pools.models import PoolInstance
from profiles.choices import AllocationStrategy


@pytest.fixture
def warm_profile(local_infrastructure, profile_factory):
    """A published CPU-only warm-pool profile with desired capacity 9 (the brief's Small)."""
    return profile_factory(
        local_infrastructure,
        "Small",
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=9,
    )


def make_instances(profile, n: int, state: str = State.READY, **fields) -> list[PoolInstance]:
    now = timezone.now()
    made = []
    for _ in range(n):
        defaults = {"ready_at": now} if state == State.READY else {}
        made.append(
            PoolInstance.objects.create(
                profile=profile,
                infrastructure=profile.infrastructure,
                profile_version=profile.version,
                state=state,
                **(defaults | fields),
            )
        )
    return made


def finish_provisioning(profile) -> int:
    """What the workers would do: every requested instance of `profile` becomes ready."""
    return PoolInstance.objects.filter(profile=profile, state=State.REQUESTED).update(
        state=State.READY, ready_at=timezone.now()
    )


def states(profile) -> dict[str, int]:
    result: dict[str, int] = {}
    for state in PoolInstance.objects.filter(profile=profile).values_list("state", flat=True):
        result[state] = result.get(state, 0) + 1
    return result
