"""Idle GPU-hours and the idle budget of a pool sized by its SLO, against the live loop:
the budget's real day, what the SLO asks beyond the maximum, and what counts as idle."""

# ruff: noqa: F811
import importlib
from datetime import datetime, timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from pools import promises, slo
from pools.lifecycle import State
from pools.models import PoolInstance, PoolInstanceEvent, Workspace
from profiles.choices import AllocationStrategy
from tests.pools.test_warmpool_slo import (  # noqa: F401
    DAY_ONE,
    TZ,
    gpu_profile,
    on_demand_requests,
    org_time_zone,
    sized,
    step,
)


def made_on(profile, moment: datetime) -> None:
    type(profile).objects.filter(pk=profile.pk).update(created=moment)
    profile.refresh_from_db()


def burst(owner, profile, now: datetime, n: int, apart: int = 20) -> None:
    """`n` requests `apart` seconds apart up to `now`, still provisioning on demand."""
    moments = [now - timedelta(seconds=apart * (k + 1)) for k in range(n)]
    on_demand_requests(owner, profile, moments, still_provisioning=True)


# -- the budget's day -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_time", "cap"),
    [
        (datetime(2025, 10, 25, 23, 30, tzinfo=TZ), 4),  # a 24-hour day: 30 min left
        (datetime(2025, 10, 26, 23, 30, tzinfo=TZ), 4),  # clocks went back at 03:00: 30 min
        (datetime(2025, 10, 26, 22, 0, tzinfo=TZ), 1),  # the same day: 2 hours left
        (datetime(2025, 3, 30, 22, 0, tzinfo=TZ), 1),  # clocks went forward: 2 hours left
    ],
)
def test_the_budget_cap_spreads_what_is_left_over_the_real_rest_of_the_local_day(
    member, gpu_profile, local_time, cap
):
    """2 GPU-hours left pay for 4 one-GPU instances for the last half hour of the day and
    for 1 for its last two hours, on the 25-hour and 23-hour days too."""
    sized(gpu_profile, idle_budget=2, max_size=10)
    made_on(gpu_profile, local_time - timedelta(days=1))
    burst(member, gpu_profile, local_time, 10)  # Erlang B asks for 13
    decision = step(gpu_profile, local_time)
    assert decision.desired == cap
    assert "budget 2 GPU-h/day, 0.0 used today" in decision.reason
    assert decision.reason.startswith(f"SLO at risk: the idle budget allows {cap}, ")


def test_when_the_budget_and_the_maximum_both_bind_the_decision_says_what_the_slo_asks(
    member, gpu_profile
):
    now = datetime(2025, 10, 25, 23, 30, tzinfo=TZ)
    sized(gpu_profile, idle_budget=2, max_size=10)
    made_on(gpu_profile, now - timedelta(days=1))
    burst(member, gpu_profile, now, 10)
    decision = step(gpu_profile, now)
    assert decision.reason.startswith(
        "SLO at risk: the idle budget allows 4, the SLO asks for 13, the maximum is 10. "
    )


# -- what the SLO asks beyond 16 instances -----------------------------------------------


def test_a_burst_that_needs_30_instances_gets_30_within_a_maximum_of_50(member, gpu_profile):
    """30 requests 5 s apart: 0.1 a second over a reach of 240 s is 24 Erlangs, which need
    30 instances for 95 %."""
    sized(gpu_profile, max_size=50)
    now = DAY_ONE + timedelta(hours=10)
    burst(member, gpu_profile, now, 30, apart=5)
    decision = step(gpu_profile, now)
    assert decision.desired == 30
    assert not decision.reason.startswith("SLO at risk")


def test_a_daily_class_of_30_is_learned_as_needing_30_and_a_maximum_of_16_is_a_risk(
    member, gpu_profile
):
    """A class of 30 users requests at 09:00 every day for two weeks; before the class of
    day 15 the pool holds 30. Under a maximum of 16, the 14 later requests of each class
    are counted uncovered, and the decision says the SLO is at risk."""
    moments = [
        DAY_ONE + timedelta(days=day, hours=9, seconds=4 * k)
        for day in range(14)
        for k in range(30)
    ]
    on_demand_requests(member, gpu_profile, moments)
    now = DAY_ONE + timedelta(days=14, hours=8, minutes=58)
    sized(gpu_profile, max_size=50)
    decision = step(gpu_profile, now)
    assert decision.desired == 30
    assert "set to cover" in decision.reason
    sized(gpu_profile, max_size=16)
    capped = step(gpu_profile, now + timedelta(minutes=1))
    assert capped.desired == 16
    assert capped.reason.startswith(
        "SLO at risk: 196 of the 420 requests learned from needed more than the maximum of 16."
    )


# -- what counts as idle ----------------------------------------------------------------


def promised_then_given_back(owner, profile, day: datetime) -> PoolInstance:
    """pool-N is requested at 08:00; a request at 08:01 finds none ready and waits for it
    (promised: its GPUs are that workspace's from then on); at 08:51 the workspace stops
    waiting and gives it back; it is ready at 08:55 and idles until 09:00."""
    instance = PoolInstance.objects.create(
        profile=profile,
        infrastructure=profile.infrastructure,
        profile_version=profile.version,
        state=State.PROVISIONING,
        created=day + timedelta(hours=8),
    )
    promised_at = day + timedelta(hours=8, minutes=1)
    workspace = Workspace.objects.create(
        owner=owner,
        profile=profile,
        infrastructure=profile.infrastructure,
        state=State.PROVISIONING,
        created=promised_at,
    )
    got = promises.promise(workspace, owner, p50=300, within=60, late=3600, now=promised_at)
    assert got is not None and got.pk == instance.pk
    promises.give_back(workspace, "its workspace was deleted while it waited")
    events = PoolInstanceEvent.objects.filter(instance=instance)  # dated as they happened
    events.filter(message__startswith=promises.PROMISED).update(timestamp=promised_at)
    events.filter(message__startswith=promises.GIVEN_BACK).update(
        timestamp=day + timedelta(hours=8, minutes=51)
    )
    PoolInstance.objects.filter(pk=instance.pk).update(
        state=State.READY, ready_at=day + timedelta(hours=8, minutes=55)
    )
    return instance


def test_the_time_a_workspace_waited_for_an_instance_it_gave_back_is_not_pool_idle_time(
    member, gpu_profile
):
    """Idle: 08:00-08:01 and 08:51-09:00, 10 minutes of one GPU, not the hour; the usage
    ledger charges the 50 minutes between to the workspace that waited."""
    day = DAY_ONE + timedelta(days=10)
    sized(gpu_profile, idle_budget=20)
    promised_then_given_back(member, gpu_profile, day)
    now = day + timedelta(hours=9)
    report = slo.report(gpu_profile, gpu_profile.pool, now)
    assert report.idle_per_day * 7 == pytest.approx(10 / 60, abs=0.01)
    decision = step(gpu_profile, now)
    assert "budget 20 GPU-h/day, 0.2 used today" in decision.reason


@pytest.fixture
def eight_gpu_profile(local_infrastructure, profile_factory):
    profile = profile_factory(
        local_infrastructure,
        "Eight GPUs",
        groups=(("A100-40GB", 8),),
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
    )
    made_on(profile, DAY_ONE - timedelta(days=30))
    return profile


def test_an_instance_idles_the_gpus_it_held_whatever_edits_its_profile_since(eight_gpu_profile):
    """An 8-GPU instance idles from 08:00; at 10:00 an admin edits the profile down to 1
    GPU (a new version): today's 2 hours of it are 16 GPU-hours, not 2."""
    profile = eight_gpu_profile
    sized(profile, min_size=1, max_size=10, idle_budget=200)  # 1 × 8 GPUs × 24 h fits
    PoolInstance.objects.create(
        profile=profile,
        infrastructure=profile.infrastructure,
        profile_version=profile.version,
        gpu_share=slo.gpu_share(profile),
        state=State.READY,
        created=DAY_ONE + timedelta(hours=8),
        ready_at=DAY_ONE + timedelta(hours=8, minutes=5),
    )
    profile.resource_groups.update(gpu_count=1)
    profile.version += 1
    profile.save()
    decision = step(profile, DAY_ONE + timedelta(hours=10))
    assert "budget 200 GPU-h/day, 16.0 used today" in decision.reason


def test_the_migration_gives_existing_instances_their_profiles_gpus(eight_gpu_profile):
    instance = PoolInstance.objects.create(
        profile=eight_gpu_profile, infrastructure=eight_gpu_profile.infrastructure
    )
    migration = importlib.import_module("pools.migrations.0020_pool_instance_gpu_share")
    migration.backfill(apps, None)
    instance.refresh_from_db()
    assert instance.gpu_share == 8


def test_idle_gpu_hours_per_day_count_only_the_days_the_profile_existed(gpu_profile):
    """A one-GPU profile made 24 hours ago whose one instance has idled since: 24 idle
    GPU-hours a day, not a seventh of them (the days before it are no data)."""
    now = timezone.now()
    made_on(gpu_profile, now - timedelta(hours=24))
    pool = sized(gpu_profile, idle_budget=30)
    PoolInstance.objects.create(
        profile=gpu_profile,
        infrastructure=gpu_profile.infrastructure,
        profile_version=gpu_profile.version,
        state=State.READY,
        created=now - timedelta(hours=24),
        ready_at=now - timedelta(hours=23, minutes=55),
    )
    assert slo.report(gpu_profile, pool, now).idle_per_day == pytest.approx(24, abs=0.1)
