"""The pools page's summary (pools.stats.summarize): warm-hit rate, time to ready, idle hours."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pools import stats
from pools.lifecycle import State
from pools.models import PoolInstance, Workspace

pytestmark = pytest.mark.django_db


def instance(
    profile, state, ready_hours_ago, claimed_hours_ago=None, changed_hours_ago=0, now=None
):
    def ago(hours):
        return None if hours is None else now - timedelta(hours=hours)

    return PoolInstance.objects.create(
        profile=profile,
        infrastructure=profile.infrastructure,
        state=state,
        created=ago(ready_hours_ago + 1),
        ready_at=ago(ready_hours_ago),
        claimed_at=ago(claimed_hours_ago),
        state_changed=ago(changed_hours_ago),
    )


def test_idle_hours_count_each_instance_from_ready_until_claimed_or_leaving_within_the_window(
    warm_profile,
):
    now = timezone.now()
    instance(warm_profile, State.READY, 30, now=now)  # idle still: 24 h of the day, 30 of the week
    instance(warm_profile, State.CLAIMED, 3, claimed_hours_ago=1, now=now)  # 2 h
    # Ready 8 days ago, deleted unclaimed 6 days ago: its last idle day is in the week.
    instance(warm_profile, State.DELETED, 8 * 24, changed_hours_ago=6 * 24, now=now)
    instance(warm_profile, State.CLAIMED, 10 * 24, claimed_hours_ago=9 * 24, now=now)  # before
    summary = stats.summarize([warm_profile.pk], now)
    assert summary.idle_hours_24h == pytest.approx(24 + 2)
    assert summary.idle_hours_7d == pytest.approx(30 + 2 + 24)


def test_time_to_ready_is_split_by_warm_hits_and_on_demand(warm_profile, member):
    now = timezone.now()

    def requested(seconds_to_ready, warm):
        created = now - timedelta(hours=1)
        workspace = Workspace.objects.create(
            owner=member,
            profile=warm_profile,
            infrastructure=warm_profile.infrastructure,
            state=State.READY,
            created=created,
            ready_at=None
            if seconds_to_ready is None
            else created + timedelta(seconds=seconds_to_ready),
        )
        if warm:
            instance(warm_profile, State.CLAIMED, 2, claimed_hours_ago=1, now=now)
            PoolInstance.objects.filter(workspace=None, state=State.CLAIMED).update(
                workspace=workspace
            )

    requested(10, warm=True)
    requested(300, warm=False)
    requested(None, warm=False)  # still provisioning: a request, no time yet
    summary = stats.summarize([warm_profile.pk], now)
    assert (summary.requests, summary.warm_hits) == (3, 1)
    assert (summary.warm_p50, summary.others_p50, summary.others_p95) == (10, 300, 300)
